"""A tenant's channels (governed memory spaces) and the daily bytes written to each per user."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Integer,
    String,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from memory_layer.models.base import Base


class ChannelPii(StrEnum):
    """What personal data gets on a channel (channels/service.py, docs/channels.md)."""

    allow = "allow"  # the tenant's PII mode applies, as on any message
    redact = "redact"  # replaced by typed placeholders before it is stored
    refuse = "refuse"  # the message is refused (422 pii_rejected)
    require_encryption = "require_encryption"  # only on an encrypted channel (422 otherwise)


class Channel(Base):
    __tablename__ = "channels"
    __table_args__ = (
        CheckConstraint("pii IN ('allow', 'redact', 'refuse', 'require_encryption')", name="pii"),
        CheckConstraint("ttl_sec IS NULL OR (ttl_sec >= 60 AND ttl_sec <= 604800)", name="ttl_sec"),
        CheckConstraint("quota_bytes IS NULL OR quota_bytes > 0", name="quota_bytes"),
    )

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    ttl_sec: Mapped[int | None] = mapped_column(Integer)
    encrypt: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    pii: Mapped[str] = mapped_column(String(32), server_default=ChannelPii.allow.value)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ChannelUsage(Base):
    """Bytes of content written per (tenant, channel, user, UTC day); user '' for none."""

    __tablename__ = "channel_usage"

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    channel: Mapped[str] = mapped_column(String(50), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    bytes: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
