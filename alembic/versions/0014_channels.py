"""channels: governed memory spaces (TTL, daily quota, PII rule, encryption at rest)

Revision ID: 0014
Revises: 0010
Create Date: 2026-12-07

- `channels`: a tenant's registered channels (name, ttl_sec, encrypt, quota_bytes, pii).
- `channel_usage`: the bytes written per (tenant, channel, user, UTC day), the counter the daily
  quota is checked on (one conditional upsert in the writing transaction).
- `messages.channel` (NOT NULL, default 'default': a catalog-only change, no row rewritten),
  `messages.encryption_key_id` and `messages.ciphertext` (an encrypted channel's content and
  metadata, AES-GCM; `content` then holds '' so the generated tsvector never sees the text), and
  an index (tenant_id, channel, created_at) for the channel filter of listings and history.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "channels",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(50), primary_key=True),
        sa.Column("ttl_sec", sa.Integer(), nullable=True),
        sa.Column("encrypt", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("quota_bytes", sa.BigInteger(), nullable=True),
        sa.Column("pii", sa.String(32), server_default="allow", nullable=False),
        sa.Column("created_at", STAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", STAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "pii IN ('allow', 'redact', 'refuse', 'require_encryption')", name="ck_channels_pii"
        ),
        sa.CheckConstraint(
            "ttl_sec IS NULL OR (ttl_sec >= 60 AND ttl_sec <= 604800)", name="ck_channels_ttl_sec"
        ),
        sa.CheckConstraint(
            "quota_bytes IS NULL OR quota_bytes > 0", name="ck_channels_quota_bytes"
        ),
    )
    op.create_table(
        "channel_usage",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("channel", sa.String(50), primary_key=True),
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("bytes", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "messages",
        sa.Column("channel", sa.String(50), server_default="default", nullable=False),
    )
    op.add_column("messages", sa.Column("encryption_key_id", sa.String(64), nullable=True))
    op.add_column("messages", sa.Column("ciphertext", sa.LargeBinary(), nullable=True))
    op.create_index(
        "ix_messages_tenant_channel_created", "messages", ["tenant_id", "channel", "created_at"]
    )
    op.create_index(
        "ix_messages_encrypted",
        "messages",
        ["tenant_id", "encryption_key_id"],
        postgresql_where=sa.text("encryption_key_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_encrypted", table_name="messages")
    op.drop_index("ix_messages_tenant_channel_created", table_name="messages")
    op.drop_column("messages", "ciphertext")
    op.drop_column("messages", "encryption_key_id")
    op.drop_column("messages", "channel")
    op.drop_table("channel_usage")
    op.drop_table("channels")
