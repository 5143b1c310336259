"""Who is calling: API keys (configured and tenant-bound), principals, tenant resolution."""
