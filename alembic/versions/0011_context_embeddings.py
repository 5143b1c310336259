"""context vectors: each turn embedded with the turn before it, beside its own vector

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

`messages.context_embedding vector(N)` (N: the dimension of `embedding`, read from the catalog,
so the two columns always match) holds the vector of "the previous turn of the conversation, then
the turn" (MEMORY_CONTEXT_VECTORS, docs/evaluation.md): a short reply ("Yes, last May!") is found
by what it answers. Its own HNSW index serves search. NULL until the embedding worker fills it
(or `memory-layer reembed`, for rows stored before); the partial index
`ix_messages_context_pending` is the worker's queue of turns still without one, and a trigger
wakes the workers when a turn is stored with its own vector already (inline embedding) but no
context vector. ADD COLUMN of a nullable column rewrites no row.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONTEXT_PENDING = (
    "context_embedding IS NULL AND embedding_status = 'ready' AND kind = 'message'"
)


def _dimensions() -> int:
    value = op.get_bind().execute(
        sa.text(
            "SELECT a.atttypmod FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass('messages') AND a.attname = 'embedding' "
            "AND NOT a.attisdropped"
        )
    ).scalar_one()
    return int(value)


def upgrade() -> None:
    op.add_column(
        "messages", sa.Column("context_embedding", Vector(_dimensions()), nullable=True)
    )
    op.create_index(
        "ix_messages_context_embedding_hnsw",
        "messages",
        ["context_embedding"],
        postgresql_using="hnsw",
        postgresql_with={"m": 16, "ef_construction": 128},
        postgresql_ops={"context_embedding": "vector_cosine_ops"},
    )
    op.create_index(
        "ix_messages_context_pending",
        "messages",
        ["tenant_id"],
        postgresql_where=sa.text(CONTEXT_PENDING),
    )
    # A NOTIFY on a channel of its own (embeddings/repository.py, CONTEXT_CHANNEL): a worker
    # that serves requests ignores it while they come, instead of waking for every message. A
    # new row never has a context vector; the condition leaves `context_embedding` out, so that
    # changing the dimension (kit/db/vectors.py) can retype the column.
    op.execute(
        """
        CREATE FUNCTION memory_layer_notify_context() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('memory_layer_context', '');
            RETURN NULL;
        END;
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER trg_messages_notify_context_insert
        AFTER INSERT ON messages
        FOR EACH ROW WHEN (NEW.embedding_status = 'ready' AND NEW.kind = 'message')
        EXECUTE FUNCTION memory_layer_notify_context()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS trg_messages_notify_context_insert ON messages")
    op.execute("DROP FUNCTION IF EXISTS memory_layer_notify_context()")
    op.drop_index("ix_messages_context_pending", table_name="messages")
    op.drop_index("ix_messages_context_embedding_hnsw", table_name="messages")
    op.drop_column("messages", "context_embedding")
