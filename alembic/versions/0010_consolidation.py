"""consolidation: derived memories (facts, preferences, summaries) and their queue

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-07

Columns on `messages` (the partitioned parent; every partition gets them):

- provenance and validity of derived memories: `source_message_ids` (the turns a fact or summary
  was distilled from), `confidence`, `superseded_by` and `valid_until` (a fact replaced by a newer
  one), `covers_through` (the created_at of the last turn a summary covers);
- the consolidation queue, like the embedding queue the table itself: `consolidation_status`
  (pending | done | failed; NULL: nothing to do), attempts, next attempt time, lease owner, lease
  end and last error. Rows stored before this revision get NULL (the worker does not go back
  through history); rows stored after it are `pending` by the column's default, so the write
  path does nothing more than before. Both ADD COLUMNs and the SET DEFAULT change the catalog
  only: no row is rewritten.

And two per-tenant switches on `tenant_policies`: `extract_facts`, `summarize` (NULL: the
MEMORY_CONSOLIDATION_* default).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UUID = postgresql.UUID(as_uuid=True)
STAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("messages", sa.Column("source_message_ids", postgresql.ARRAY(UUID), nullable=True))
    op.add_column("messages", sa.Column("confidence", sa.Float(), nullable=True))
    op.add_column("messages", sa.Column("superseded_by", UUID, nullable=True))
    op.add_column("messages", sa.Column("valid_until", STAMP, nullable=True))
    op.add_column("messages", sa.Column("covers_through", STAMP, nullable=True))
    # No default while the column is added (existing rows: NULL, nothing to do), then the default
    # every new row takes.
    op.add_column("messages", sa.Column("consolidation_status", sa.String(16), nullable=True))
    op.alter_column("messages", "consolidation_status", server_default="pending")
    op.add_column(
        "messages",
        sa.Column("consolidation_attempts", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("messages", sa.Column("consolidation_next_attempt_at", STAMP, nullable=True))
    op.add_column("messages", sa.Column("consolidation_lease_owner", UUID, nullable=True))
    op.add_column("messages", sa.Column("consolidation_lease_expires_at", STAMP, nullable=True))
    op.add_column("messages", sa.Column("consolidation_error", sa.Text(), nullable=True))
    op.create_check_constraint(
        "ck_messages_consolidation_status",
        "messages",
        "consolidation_status IN ('pending', 'done', 'failed')",
    )
    op.create_check_constraint(
        "ck_messages_confidence_range", "messages", "confidence >= 0 AND confidence <= 1"
    )
    op.create_index(
        "ix_messages_consolidation_pending",
        "messages",
        ["created_at"],
        postgresql_where=sa.text("consolidation_status = 'pending'"),
    )
    op.add_column("tenant_policies", sa.Column("extract_facts", sa.Boolean(), nullable=True))
    op.add_column("tenant_policies", sa.Column("summarize", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column("tenant_policies", "summarize")
    op.drop_column("tenant_policies", "extract_facts")
    op.drop_index("ix_messages_consolidation_pending", table_name="messages")
    op.drop_constraint("ck_messages_confidence_range", "messages", type_="check")
    op.drop_constraint("ck_messages_consolidation_status", "messages", type_="check")
    for column in (
        "consolidation_error",
        "consolidation_lease_expires_at",
        "consolidation_lease_owner",
        "consolidation_next_attempt_at",
        "consolidation_attempts",
        "consolidation_status",
        "covers_through",
        "valid_until",
        "superseded_by",
        "confidence",
        "source_message_ids",
    ):
        op.drop_column("messages", column)
