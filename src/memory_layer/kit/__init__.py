"""Plumbing that no domain owns: database, HTTP, errors, observability, Redis.

Nothing in `kit` imports a domain package; domains import `kit`.
"""
