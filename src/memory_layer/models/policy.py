"""Per-tenant policy overrides, and each tenant's running usage (what its quotas are checked on)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, Float, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from memory_layer.models.base import Base


class PiiMode(StrEnum):
    """What happens to personal data found in a message's content (pii/service.py)."""

    off = "off"
    detect = "detect"  # store the message and the kinds found (`pii_kinds`)
    redact = "redact"  # replace each finding with a typed placeholder before it is stored
    reject = "reject"  # refuse the message (422 naming the kinds found)


class AuditLevel(StrEnum):
    """What a tenant's audit log records (audit/deps.py)."""

    admin = "admin"  # the operators' actions only: keys, policies, deletions, erasures, imports
    writes = "writes"  # also every write of the tenant's data: message, batch, edit, state ...
    all = "all"  # also every read: gets, listings, histories, searches, context calls


class PiiKind(StrEnum):
    """A kind of personal data the PII screen finds (the values stored in `messages.pii_kinds`)."""

    email = "email"
    iban = "iban"
    payment_card = "payment_card"
    us_ssn = "us_ssn"
    ip_address = "ip_address"
    phone = "phone"


class TenantPolicy(Base):
    """A tenant's overrides: a NULL column takes the MEMORY_* default; 0 means none (no TTL, no
    quota, never archive or delete)."""

    __tablename__ = "tenant_policies"
    __table_args__ = (
        CheckConstraint("pii_mode IN ('off', 'detect', 'redact', 'reject')", name="pii_mode"),
        CheckConstraint("audit_level IN ('admin', 'writes', 'all')", name="audit_level"),
    )

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    archive_after_days: Mapped[float | None] = mapped_column(Float)
    delete_after_days: Mapped[float | None] = mapped_column(Float)
    retention_importance_below: Mapped[float | None] = mapped_column(Float)
    # kind -> {"archive_after_days": n | null, "delete_after_days": n | null}
    retention_by_kind: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    default_ttl_seconds: Mapped[int | None] = mapped_column(BigInteger)
    max_messages: Mapped[int | None] = mapped_column(BigInteger)
    max_content_bytes: Mapped[int | None] = mapped_column(BigInteger)
    max_state_bytes: Mapped[int | None] = mapped_column(BigInteger)
    max_messages_per_conversation: Mapped[int | None] = mapped_column(BigInteger)
    rate_limit: Mapped[str | None] = mapped_column(String(64))
    pii_mode: Mapped[str | None] = mapped_column(String(16))
    # Consolidation (consolidation/): facts from user turns, running conversation summaries.
    extract_facts: Mapped[bool | None] = mapped_column(Boolean)
    summarize: Mapped[bool | None] = mapped_column(Boolean)
    audit_level: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TenantUsage(Base):
    """Messages and content bytes a tenant stores, kept by statement triggers on `messages`
    (insert, delete, content edit) in the writing transaction, so every path that adds or removes
    rows counts, and quotas are checked on this one row instead of counting the tenant."""

    __tablename__ = "tenant_usage"

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    messages: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    content_bytes: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class ConversationUsage(Base):
    """Messages a conversation stores (every row of any kind), kept by statement triggers on
    `messages` (insert, delete) in the writing transaction like `tenant_usage`: the per-conversation
    quota is checked on this one row instead of counting the conversation."""

    __tablename__ = "conversation_usage"

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    messages: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
