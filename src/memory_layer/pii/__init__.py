"""Personal data in message content: detect, redact or refuse it, per the tenant's PII mode."""
