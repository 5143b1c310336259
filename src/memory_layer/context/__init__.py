"""The context: a budgeted prompt context for a conversation (POST /v1/context)."""
