"""What the tools answer: compact views of memories, states and conversations for a model to
read (the REST schemas carry more than an assistant needs: status URLs, embedding bookkeeping)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from memory_layer.models.message import EmbeddingStatus, Kind, Role


class MemoryView(BaseModel):
    """A stored memory (a message, fact, preference, ...)."""

    model_config = ConfigDict(from_attributes=True)

    message_id: uuid.UUID = Field(validation_alias=AliasChoices("id", "message_id"))
    conversation_id: str
    user_id: str | None
    role: Role
    kind: Kind
    content: str
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("metadata_", "metadata"))
    importance: float
    created_at: datetime
    archived_at: datetime | None = None


class StoredMemory(MemoryView):
    """A memory just stored or changed, with its embedding status."""

    tenant_id: str
    embedding_status: EmbeddingStatus
    use_count: int = Field(default=0, description="Recorded uses (record_use).")
    last_used_at: datetime | None = None
    replayed: bool = Field(
        default=False, description="A retry with the same client_message_id: the first message."
    )


class RecalledMemory(MemoryView):
    """A memory found by recall, with the numbers that ranked it."""

    score: float
    similarity: float | None


class Recall(BaseModel):
    total: int
    items: list[RecalledMemory]
    mode: str
    degraded: str | None


class MemoryPage(BaseModel):
    """One page of memories; pass next_cursor back for the next (null: the last page)."""

    items: list[MemoryView]
    next_cursor: str | None


class StateView(BaseModel):
    """A conversation's working-memory document and its version."""

    model_config = ConfigDict(from_attributes=True)

    conversation_id: str
    state: dict[str, Any] = Field(validation_alias=AliasChoices("document", "state"))
    version: int
    etag: str
    user_id: str | None
    updated_at: datetime
    expires_at: datetime | None


class ConversationView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    conversation_id: str
    message_count: int
    last_message_at: datetime
    user_id: str | None


class ConversationPage(BaseModel):
    items: list[ConversationView]
    next_cursor: str | None


class SummaryView(BaseModel):
    """A conversation's one current summary, as summarize left it."""

    message_id: uuid.UUID
    conversation_id: str
    content: str
    covers_through: datetime
    updated: bool = Field(description="False: the current summary already covered every turn.")


class Deleted(BaseModel):
    deleted: int


class ContextMemory(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    message_id: uuid.UUID
    kind: str
    content: str
    score: float


class ContextView(BaseModel):
    """A conversation's prompt context within a token budget: `text` to put in the prompt as
    it is (or `messages`, the same as chat messages), and the parts it was made of."""

    model_config = ConfigDict(from_attributes=True)

    conversation_id: str
    user_id: str | None
    query: str | None
    text: str
    messages: list[dict[str, str]]
    memories: list[ContextMemory]
    memories_omitted: int
    turns_omitted: int
    budget_tokens: int
    total_tokens: int
    degraded: str | None
