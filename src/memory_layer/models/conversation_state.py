"""Working memory: one JSON document per conversation (an agent's scratchpad), versioned for
optimistic concurrency, optionally expiring."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Index, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from memory_layer.models.base import Base


class ConversationState(Base):
    __tablename__ = "conversation_states"
    __table_args__ = (
        Index("ix_conversation_states_tenant_user", "tenant_id", "user_id"),
        Index(
            "ix_conversation_states_expires_at",
            "expires_at",
            postgresql_where=text("expires_at IS NOT NULL"),
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # The person the conversation belongs to, when the writer says so: erasing them erases it.
    user_id: Mapped[str | None] = mapped_column(String(128))
    document: Mapped[Any] = mapped_column(JSONB)
    version: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Past this time the state is gone for every reader; retention deletes the row later.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
