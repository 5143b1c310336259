"""The `messages` table: one row per conversation message, and (for the worker) its embedding job."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import Computed, DateTime, Float, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR, UUID
from sqlalchemy.orm import Mapped, mapped_column

from memory_layer.models.base import Base


class Role(StrEnum):
    user = "user"
    assistant = "assistant"
    system = "system"
    tool = "tool"


class EmbeddingStatus(StrEnum):
    pending = "pending"
    ready = "ready"
    failed = "failed"


class Message(Base):
    __tablename__ = "messages"

    # tenant_id leads every key so the table can be distributed by tenant later.
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str | None] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, server_default="{}")
    importance: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    client_message_id: Mapped[str | None] = mapped_column(String(128))
    # The dimension is fixed by the migration; the type here needs none to bind or read.
    # Deferred: parsing 384 floats per row is wasted work for every read that only shows the text.
    embedding: Mapped[list[float] | None] = mapped_column(Vector(), deferred=True)
    embedding_model: Mapped[str | None] = mapped_column(String(128))
    embedding_status: Mapped[str] = mapped_column(String(16), server_default="pending")
    embedding_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    # The worker's queue: a pending row is due once this time has passed (a lease pushes it ahead).
    embedding_next_attempt_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    embedding_lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    embedding_lease_owner: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    embedding_error: Mapped[str | None] = mapped_column(Text)
    embedded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    content_tsv: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed("to_tsvector('english'::regconfig, content)", persisted=True),
        deferred=True,
    )
