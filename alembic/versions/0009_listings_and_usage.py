"""listings without a query, conversation metadata, usage feedback

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

`messages` gets usage counts (`use_count`, `success_count`, `failure_count`) and `last_used_at`,
written by POST /v1/messages/{id}/usage and read by search's ranking. Adding a column with a
constant default to the partitioned parent reaches every partition and rewrites no row.

Two indexes serve GET /v1/messages: a GIN index (`jsonb_path_ops`) on `metadata` for containment
filters (`{"tags": ["travel"]}`), which search's metadata filter uses too, and (tenant_id,
importance, created_at) for the listing ordered by importance. Created on the parent, they are
built on each partition.

`conversations` holds a conversation's own title, tags and metadata, keyed (tenant_id,
conversation_id) like every tenant table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTS = ("use_count", "success_count", "failure_count")


def upgrade() -> None:
    for name in COUNTS:
        op.add_column(
            "messages", sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
    op.add_column("messages", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_messages_metadata",
        "messages",
        ["metadata"],
        postgresql_using="gin",
        postgresql_ops={"metadata": "jsonb_path_ops"},
    )
    op.create_index(
        "ix_messages_tenant_importance", "messages", ["tenant_id", "importance", "created_at"]
    )
    op.create_table(
        "conversations",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("tags", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("metadata", postgresql.JSONB(), server_default="{}", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "conversation_id", name="pk_conversations"),
    )


def downgrade() -> None:
    op.drop_table("conversations")
    op.drop_index("ix_messages_tenant_importance", table_name="messages")
    op.drop_index("ix_messages_metadata", table_name="messages")
    op.drop_column("messages", "last_used_at")
    for name in reversed(COUNTS):
        op.drop_column("messages", name)
