"""Event streams: append-only JSON events per conversation."""
