"""Erasure: delete everything of one person in a tenant, and keep a content-free record of it."""
