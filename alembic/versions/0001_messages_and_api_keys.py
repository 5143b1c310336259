"""messages and api_keys, with HNSW, full-text and tenant indexes

Revision ID: 0001
Revises:
Create Date: 2026-11-21

The embedding column's dimension comes from MEMORY_EMBEDDING_DIMENSIONS at the time this migration
runs (or the `embedding_dimensions` attribute a caller passes to Alembic's config). To change it
later, see docs/operations.md ("Changing the embedding dimension").
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _dimensions() -> int:
    configured = context.config.attributes.get("embedding_dimensions")
    if configured is None:
        from memory_layer.config import Settings

        configured = Settings().embedding_dimensions
    return int(configured)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "messages",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("metadata", postgresql.JSONB(), server_default="{}", nullable=False),
        sa.Column("importance", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("client_message_id", sa.String(128), nullable=True),
        sa.Column("embedding", Vector(_dimensions()), nullable=True),
        sa.Column("embedding_model", sa.String(128), nullable=True),
        sa.Column("embedding_status", sa.String(16), server_default="pending", nullable=False),
        sa.Column("embedding_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("embedding_next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("embedding_lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("embedding_error", sa.Text(), nullable=True),
        sa.Column("embedded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "content_tsv",
            postgresql.TSVECTOR(),
            sa.Computed("to_tsvector('english'::regconfig, content)", persisted=True),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_messages"),
        sa.UniqueConstraint("tenant_id", "client_message_id", name="uq_messages_tenant_id_client_message_id"),
        sa.CheckConstraint("role IN ('user', 'assistant', 'system', 'tool')", name="ck_messages_role"),
        sa.CheckConstraint("importance >= 0 AND importance <= 1", name="ck_messages_importance_range"),
        sa.CheckConstraint(
            "embedding_status IN ('pending', 'ready', 'failed')", name="ck_messages_embedding_status"
        ),
    )
    op.create_index(
        "ix_messages_tenant_conversation_created",
        "messages",
        ["tenant_id", "conversation_id", "created_at"],
    )
    op.create_index("ix_messages_tenant_created", "messages", ["tenant_id", "created_at"])
    op.create_index(
        "ix_messages_embedding_hnsw",
        "messages",
        ["embedding"],
        postgresql_using="hnsw",
        postgresql_with={"m": 16, "ef_construction": 64},
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )
    op.create_index("ix_messages_content_tsv", "messages", ["content_tsv"], postgresql_using="gin")
    # The worker's queue is the table itself: this partial index keeps claiming cheap.
    op.create_index(
        "ix_messages_embedding_pending",
        "messages",
        ["embedding_next_attempt_at"],
        postgresql_where=sa.text("embedding_status = 'pending'"),
    )

    op.create_table(
        "api_keys",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_index("ix_messages_embedding_pending", table_name="messages")
    op.drop_index("ix_messages_content_tsv", table_name="messages")
    op.drop_index("ix_messages_embedding_hnsw", table_name="messages")
    op.drop_index("ix_messages_tenant_created", table_name="messages")
    op.drop_index("ix_messages_tenant_conversation_created", table_name="messages")
    op.drop_table("messages")
