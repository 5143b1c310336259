"""Event streams: append-only JSON events per conversation, numbered per stream."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from memory_layer.models.base import Base


class EventStream(Base):
    """A conversation's stream counter: appends lock this row, so `seq` is gapless per stream."""

    __tablename__ = "event_streams"

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)


class ConversationEvent(Base):
    __tablename__ = "conversation_events"
    __table_args__ = (
        # GET ...?type=...: a stream's events of some types, in seq order.
        Index("ix_conversation_events_type", "tenant_id", "conversation_id", "type", "seq"),
        Index("ix_conversation_events_tenant_user", "tenant_id", "user_id"),
        # Retention by age, across tenants.
        Index("ix_conversation_events_created_at", "created_at"),
        Index(
            "ix_conversation_events_expires_at",
            "expires_at",
            postgresql_where=text("expires_at IS NOT NULL"),
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    type: Mapped[str] = mapped_column(String(128))
    data: Mapped[Any] = mapped_column(JSONB)
    description: Mapped[str | None] = mapped_column(Text)
    # The searchable copy of the description: a message of kind `event` (same tenant).
    message_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    user_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Past this time no read returns the event; retention deletes it (and its message).
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
