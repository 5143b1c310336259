"""Schemas of the erasure routes."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from memory_layer.kit.schemas import CursorPage, Identifier


class ErasureRequest(BaseModel):
    """Options of an erasure (query string)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = Field(
        default=None, description="Required unless the API key is bound to a tenant."
    )
    include_unattributed: bool = Field(
        default=True,
        description="Also delete the messages without a user_id (the assistant's replies, system "
        "and tool turns) of the conversations in which this user is the only one named.",
    )


class ErasureCounts(BaseModel):
    """How many rows an erasure deleted."""

    messages: int = Field(description="Every message deleted.")
    user_messages: int = Field(description="Messages that carried this user_id.")
    unattributed_messages: int = Field(
        description="Messages without a user_id in conversations only this user was named in."
    )
    conversations: int = Field(description="Conversations that lost at least one message.")
    conversation_states: int = Field(
        default=0,
        description="Working-memory states deleted: those written for this user and those of "
        "every conversation a message of theirs was in.",
    )
    conversation_descriptions: int = Field(
        default=0,
        description="Conversation titles, tags and metadata deleted: those of every conversation "
        "a message of theirs was in.",
    )
    events: int = Field(
        default=0,
        description="Conversation events deleted: this user's, and (with include_unattributed) "
        "the unnamed ones of conversations only this user was named in.",
    )


class ErasureRead(BaseModel):
    """The record of one erasure: who asked, when, how many rows; never any content."""

    model_config = ConfigDict(from_attributes=True)

    erasure_id: uuid.UUID = Field(validation_alias=AliasChoices("id", "erasure_id"))
    tenant_id: str
    user_id: str
    principal: str = Field(description="The label of the API key that asked (never the key).")
    erased_at: datetime
    counts: ErasureCounts


class ErasureResponse(ErasureRead):
    """The erasure just done: its record, with what it deleted."""


class ErasureListRequest(BaseModel):
    """Which erasure records to list (query string)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = Field(default=None, description="Only this tenant's erasures.")
    user_id: Identifier | None = Field(default=None, description="Only this user's erasures.")
    limit: int = Field(default=50, ge=1, le=1000, description="Items per page.")
    cursor: str | None = Field(
        default=None, description="`next_cursor` of the previous page, unchanged."
    )


class ErasureListResponse(CursorPage[ErasureRead]):
    """One page of erasure records, newest first."""
