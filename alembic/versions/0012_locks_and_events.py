"""locks and event streams

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-07

- `locks`: a named lock per (tenant, name) with its current grant (token, lease end) and its
  fencing number, which every grant increments in the statement that grants; the row stays
  after a release, so the number only grows.
- `event_streams`: a conversation's last sequence number (appends lock it: gapless `seq`).
- `conversation_events`: append-only events per conversation, keyed (tenant, conversation, seq),
  with an optional description copied to a message of kind `event` (`message_id`) for search.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "locks",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("token", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("fencing_token", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", STAMP, nullable=True),
        sa.Column("expires_at", STAMP, nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "name", name="pk_locks"),
    )
    op.create_index(
        "ix_locks_expires_at", "locks", ["expires_at"],
        postgresql_where=sa.text("token IS NOT NULL"),
    )
    op.create_table(
        "event_streams",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "conversation_id", name="pk_event_streams"),
    )
    op.create_table(
        "conversation_events",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("data", postgresql.JSONB(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("message_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("user_id", sa.String(128), nullable=True),
        sa.Column("created_at", STAMP, server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", STAMP, nullable=True),
        sa.PrimaryKeyConstraint(
            "tenant_id", "conversation_id", "seq", name="pk_conversation_events"
        ),
    )
    op.create_index(
        "ix_conversation_events_type", "conversation_events",
        ["tenant_id", "conversation_id", "type", "seq"],
    )
    op.create_index(
        "ix_conversation_events_tenant_user", "conversation_events", ["tenant_id", "user_id"]
    )
    op.create_index("ix_conversation_events_created_at", "conversation_events", ["created_at"])
    op.create_index(
        "ix_conversation_events_expires_at", "conversation_events", ["expires_at"],
        postgresql_where=sa.text("expires_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_table("conversation_events")
    op.drop_table("event_streams")
    op.drop_table("locks")
