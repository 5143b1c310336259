"""Liveness and readiness (GET /v1/admin/health, GET /v1/admin/readiness)."""
