"""Background jobs that run beside the API (retention schedule now, embedding worker later)."""
