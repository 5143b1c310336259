"""Schemas of the message routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from memory_layer.models.message import EmbeddingStatus, Role
from memory_layer.schemas.common import Identifier


def _reject_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    return value


class MessageCreate(BaseModel):
    """One conversation message to remember."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = Field(
        default=None, description="Required unless the API key is bound to a tenant."
    )
    conversation_id: Identifier
    role: Role
    content: str = Field(min_length=1, description="Message text; NUL bytes are rejected.")
    user_id: Identifier | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    importance_override: float | None = Field(default=None, ge=0.0, le=1.0)
    client_message_id: Identifier | None = Field(
        default=None, description="Idempotency key: a retry with the same id returns the first message."
    )
    created_at: AwareDatetime | None = Field(
        default=None, description="For imports of older history; defaults to the server's time."
    )

    @field_validator("content")
    @classmethod
    def _content(cls, value: str) -> str:
        _reject_nul(value)
        if not value.strip():
            raise ValueError("must contain non-whitespace text")
        return value


class MessageRead(BaseModel):
    """A stored message."""

    model_config = ConfigDict(from_attributes=True)

    message_id: uuid.UUID
    tenant_id: str
    conversation_id: str
    user_id: str | None
    role: Role
    content: str
    metadata: dict[str, Any]
    importance: float
    created_at: datetime
    client_message_id: str | None
    embedding_status: EmbeddingStatus = Field(
        description="pending: queued for the worker (already found by keyword search); ready: "
        "embedded; failed: gave up after MEMORY_EMBEDDING_MAX_ATTEMPTS (see embedding_error)."
    )
    embedding_model: str | None
    embedding_attempts: int
    embedding_error: str | None = Field(description="The last embedding failure, if any.")
    embedded_at: datetime | None
    archived_at: datetime | None
    status_url: str = Field(description="Where to poll this message's embedding status.")
