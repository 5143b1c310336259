"""Search: what the tenant's memory holds that is relevant to a query (GET/POST /v1/memory/search)."""
