"""Business rules: ingestion, retrieval, retention, API keys. No FastAPI imports here."""
