"""Pydantic request and response models (they are the OpenAPI document)."""
