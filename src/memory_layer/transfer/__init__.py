"""Export and import of a tenant's messages as NDJSON (HTTP and CLI)."""
