"""Consolidation: summaries and facts the service distils from conversations itself."""
