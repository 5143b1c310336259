"""Schemas of the consolidation routes: a user's facts, a conversation's summary."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AliasPath, BaseModel, ConfigDict, Field

from memory_layer.kit.schemas import CursorPage, Identifier
from memory_layer.models.message import EmbeddingStatus

TENANT_DESCRIPTION = "Required unless the API key is bound to a tenant."


class FactKind(StrEnum):
    fact = "fact"
    preference = "preference"


class FactListRequest(BaseModel):
    """Which of the user's facts to list (query string)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = Field(default=None, description=TENANT_DESCRIPTION)
    include_superseded: bool = Field(
        default=False,
        description="Also list facts a newer one replaced (they carry superseded_by and "
        "valid_until).",
    )
    kind: FactKind | None = Field(default=None, description="Only facts, or only preferences.")
    limit: int = Field(default=100, ge=1, le=1000, description="Items per page.")
    cursor: str | None = Field(
        default=None,
        description="`next_cursor` of the previous page, unchanged; only valid for the same "
        "tenant, user and filters (else `400 invalid_cursor`).",
    )


class FactRead(BaseModel):
    """A fact or preference the service distilled from the user's turns."""

    model_config = ConfigDict(from_attributes=True)

    fact_id: uuid.UUID = Field(validation_alias="id")
    user_id: str
    conversation_id: str = Field(description="The conversation of the turn that stated it.")
    kind: FactKind
    content: str = Field(description="A short third-person statement.")
    subject: str | None = Field(
        default=None,
        validation_alias=AliasPath("metadata_", "subject"),
        description="What it is about (residence, name, opinion:coffee, ...): a new value for a "
        "subject the user has supersedes the old one.",
    )
    value: str | None = Field(default=None, validation_alias=AliasPath("metadata_", "value"))
    confidence: float | None
    source_message_ids: list[uuid.UUID] = Field(
        description="The turns that stated it (a repeated statement adds its turn)."
    )
    stated_at: datetime = Field(
        validation_alias="created_at", description="When its first turn stated it."
    )
    superseded_by: uuid.UUID | None = Field(description="The fact that replaced it; null: current.")
    valid_until: datetime | None = Field(description="When a newer value was stated; null: current.")
    embedding_status: EmbeddingStatus
    metadata: dict[str, Any] = Field(validation_alias="metadata_")


class FactListResponse(CursorPage[FactRead]):
    """One page of the user's facts, newest first."""


class SummarizeRequest(BaseModel):
    """The tenant of the conversation (query string)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = Field(default=None, description=TENANT_DESCRIPTION)


class SummaryRead(BaseModel):
    """The conversation's current summary (a message of kind `summary`)."""

    model_config = ConfigDict(from_attributes=True)

    summary_id: uuid.UUID = Field(validation_alias="id")
    conversation_id: str
    content: str
    covers_through: datetime = Field(description="created_at of the last turn it covers.")
    source_message_ids: list[uuid.UUID] = Field(description="The turns it was made from.")
    updated: bool = Field(
        description="true: made now; false: the current summary already covered every turn."
    )
