"""The audit log: who did what, when, to which tenant; counts, never content. Append-only (a
trigger refuses UPDATE, DELETE and TRUNCATE but the log's own retention; see migration 0005)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, Index, String, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from memory_layer.models.base import Base


class AuditAction(StrEnum):
    key_created = "key.created"
    key_revoked = "key.revoked"
    policy_updated = "policy.updated"
    message_deleted = "message.deleted"
    conversation_deleted = "conversation.deleted"
    conversation_state_deleted = "conversation_state.deleted"
    user_erased = "user.erased"
    import_completed = "import.completed"
    retention_run = "retention.run"
    embeddings_requeued = "embeddings.requeued"
    channel_updated = "channel.updated"
    channel_deleted = "channel.deleted"
    # Per the tenant's audit_level (audit/deps.py): a request that wrote or read its data.
    api_write = "api.write"
    api_read = "api.read"


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_occurred_at", "occurred_at", "id"),
        Index("ix_audit_events_tenant_occurred_at", "tenant_id", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # None: the action concerned no single tenant (a retention run over all of them, an
    # operator's key).
    tenant_id: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    # The acting key's label (`key:<id>`, `admin-key`, `service-key`, `cli`, `scheduler`).
    actor: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    # What was acted on, as `kind:id` (`message:<uuid>`, `user:<id>`, `key:<uuid>`).
    target: Mapped[str | None] = mapped_column(String(300))
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    request_id: Mapped[str | None] = mapped_column(String(128))
    # The route of an `api.write` / `api.read` entry, as `METHOD /path/{template}`.
    route: Mapped[str | None] = mapped_column(String(200))
