"""Per-tenant policy: retention, default TTL, quotas, rate limit and PII mode over the MEMORY_* defaults."""
