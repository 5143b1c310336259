"""Audit log: an append-only record of who did what (key changes, deletions, erasures, imports,
retention runs, requeues, policy changes), never content."""
