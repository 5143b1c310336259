"""Named locks: one row per (tenant, name), kept after release so its fencing number only grows."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, String, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from memory_layer.models.base import Base


class Lock(Base):
    __tablename__ = "locks"
    __table_args__ = (
        # Locks held (count_held_locks) and the sweep of long-expired holders.
        Index("ix_locks_expires_at", "expires_at", postgresql_where=text("token IS NOT NULL")),
    )

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    # The current grant's secret; NULL once released. A grant whose lease has ended is free
    # whatever its token (the next acquire replaces it).
    token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    # Incremented by every grant, in the statement that grants: it never repeats for a name.
    fencing_token: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
