"""Schemas of the message routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, computed_field

from memory_layer.kit.schemas import Identifier, NonBlankText
from memory_layer.models.message import EmbeddingStatus, Role


class MessageCreate(BaseModel):
    """One conversation message to remember."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = Field(
        default=None, description="Required unless the API key is bound to a tenant."
    )
    conversation_id: Identifier
    role: Role
    content: NonBlankText = Field(min_length=1, description="Message text; NUL bytes are rejected.")
    user_id: Identifier | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    importance_override: float | None = Field(default=None, ge=0.0, le=1.0)
    client_message_id: Identifier | None = Field(
        default=None, description="Idempotency key: a retry with the same id returns the first message."
    )
    created_at: AwareDatetime | None = Field(
        default=None, description="For imports of older history; defaults to the server's time."
    )


class MessageRead(BaseModel):
    """A stored message."""

    model_config = ConfigDict(from_attributes=True)

    message_id: uuid.UUID = Field(validation_alias="id")
    tenant_id: str
    conversation_id: str
    user_id: str | None
    role: Role
    content: str
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
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

    @computed_field(description="Where to poll this message's embedding status.")  # type: ignore[prop-decorator]
    @property
    def status_url(self) -> str:
        return f"/v1/messages/{self.message_id}"
