"""Database plumbing: engine/session factories and the embedded PostgreSQL launcher."""
