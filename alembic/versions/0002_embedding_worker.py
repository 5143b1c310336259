"""the embedding worker: lease owner, NOTIFY on pending rows, failed-row index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

The messages table is the job queue. A row is due when `embedding_status = 'pending'` and
`embedding_next_attempt_at <= now()`; claiming a row pushes `embedding_next_attempt_at` to the end of
its lease, so one condition (served by the partial index of 0001) covers new rows, retries after a
back-off and rows whose worker died.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "memory_layer_embeddings"


def upgrade() -> None:
    op.add_column(
        "messages", sa.Column("embedding_lease_owner", postgresql.UUID(as_uuid=True), nullable=True)
    )
    op.alter_column("messages", "embedding_next_attempt_at", server_default=sa.func.now())
    op.execute(
        "UPDATE messages SET embedding_next_attempt_at = created_at "
        "WHERE embedding_status = 'pending' AND embedding_next_attempt_at IS NULL"
    )
    op.create_index(
        "ix_messages_embedding_failed",
        "messages",
        ["tenant_id"],
        postgresql_where=sa.text("embedding_status = 'failed'"),
    )
    # Workers LISTEN on this channel; identical notifications within one transaction are merged
    # by PostgreSQL, so a bulk insert wakes them once.
    op.execute(
        f"""
        CREATE FUNCTION memory_layer_notify_pending() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '');
            RETURN NULL;
        END;
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER trg_messages_notify_pending_insert
        AFTER INSERT ON messages
        FOR EACH ROW WHEN (NEW.embedding_status = 'pending')
        EXECUTE FUNCTION memory_layer_notify_pending()
        """
    )
    op.execute(
        """
        CREATE TRIGGER trg_messages_notify_pending_update
        AFTER UPDATE OF embedding_status ON messages
        FOR EACH ROW WHEN (NEW.embedding_status = 'pending' AND OLD.embedding_status <> 'pending')
        EXECUTE FUNCTION memory_layer_notify_pending()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS trg_messages_notify_pending_update ON messages")
    op.execute("DROP TRIGGER IF EXISTS trg_messages_notify_pending_insert ON messages")
    op.execute("DROP FUNCTION IF EXISTS memory_layer_notify_pending()")
    op.drop_index("ix_messages_embedding_failed", table_name="messages")
    op.alter_column("messages", "embedding_next_attempt_at", server_default=None)
    op.drop_column("messages", "embedding_lease_owner")
