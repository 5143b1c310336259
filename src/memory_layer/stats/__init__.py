"""Stats: what a tenant (or one of its users or conversations) stores (GET /v1/stats)."""
