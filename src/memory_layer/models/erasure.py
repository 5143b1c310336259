"""The record of each erasure of a user: when, by which key, how many rows; never the content."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, String, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from memory_layer.models.base import Base


class Erasure(Base):
    __tablename__ = "erasures"
    __table_args__ = (Index("ix_erasures_tenant_user", "tenant_id", "user_id"),)

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128))
    # The principal's label (e.g. `key:<id>`, `admin-key`), never a secret.
    principal: Mapped[str] = mapped_column(String(128))
    erased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
