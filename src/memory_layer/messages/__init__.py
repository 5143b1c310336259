"""Storing conversation messages and reading them back (POST/GET /v1/messages)."""
