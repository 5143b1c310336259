"""API keys, stored as SHA-256 hashes (the key itself is shown once, at creation), with scopes,
an optional tenant and an optional expiry."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, DateTime, Index, String, func, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, mapped_column

from memory_layer.models.base import Base


class KeyScope(StrEnum):
    """What a key may do: read (searches, listings), write (store, edit, delete, import), admin
    (/v1/admin/*)."""

    read = "read"
    write = "write"
    admin = "admin"


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint(
            "scopes <@ ARRAY['read', 'write', 'admin']::varchar[] AND cardinality(scopes) >= 1",
            name="scopes",
        ),
        # Admin routes act across tenants: only a key bound to no tenant may hold the scope.
        CheckConstraint("tenant_id IS NULL OR NOT ('admin' = ANY (scopes))", name="admin_unbound"),
        Index("ix_api_keys_tenant_id", "tenant_id"),
    )

    # Keyed by id alone: a key is found by its hash before any tenant is known (a reference
    # table once the data is sharded by tenant).
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    # None: the key may act for any tenant (it names one per request).
    tenant_id: Mapped[str | None] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128))
    key_prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(
        ARRAY(String(16)), server_default=text("ARRAY['read', 'write']::varchar[]")
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
