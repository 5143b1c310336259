"""Conversations: summaries, history with cursor pagination, deletion (/v1/conversations)."""
