"""Retention: archive or delete old, unimportant messages (on request, from cron, on a schedule)."""
