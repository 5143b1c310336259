"""Channels: governed memory spaces of a tenant (TTL, daily quota, PII rule, encryption)."""
