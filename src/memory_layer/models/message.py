"""The `messages` table: one row per conversation message, and (for the worker) its embedding job."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ColumnElement,
    Computed,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
    func,
    inspect,
    or_,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR, UUID
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.orm.attributes import set_committed_value

from memory_layer.kit.crypto import EncryptionKeyRing, keyring_of, open_message
from memory_layer.models.base import Base


class Role(StrEnum):
    user = "user"
    assistant = "assistant"
    system = "system"
    tool = "tool"


class Kind(StrEnum):
    """What a stored memory is: a raw conversation turn, or something distilled from turns."""

    message = "message"
    fact = "fact"
    preference = "preference"
    procedure = "procedure"
    summary = "summary"
    event = "event"


class EmbeddingStatus(StrEnum):
    pending = "pending"
    ready = "ready"
    failed = "failed"


class Message(Base):
    __tablename__ = "messages"
    # Declared as the migrations create them; `alembic check` (in the test command) keeps the two
    # in step.
    __table_args__ = (
        UniqueConstraint(
            "tenant_id", "client_message_id", name="uq_messages_tenant_id_client_message_id"
        ),
        CheckConstraint("role IN ('user', 'assistant', 'system', 'tool')", name="role"),
        CheckConstraint("importance >= 0 AND importance <= 1", name="importance_range"),
        CheckConstraint("embedding_status IN ('pending', 'ready', 'failed')", name="embedding_status"),
        CheckConstraint(
            "kind IN ('message', 'fact', 'preference', 'procedure', 'summary', 'event')", name="kind"
        ),
        CheckConstraint(
            "consolidation_status IN ('pending', 'done', 'failed')", name="consolidation_status"
        ),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence_range"),
        Index("ix_messages_tenant_conversation_created", "tenant_id", "conversation_id", "created_at"),
        Index("ix_messages_tenant_created", "tenant_id", "created_at"),
        Index("ix_messages_tenant_user", "tenant_id", "user_id"),
        Index("ix_messages_tenant_channel_created", "tenant_id", "channel", "created_at"),
        # `memory-layer keys rotate-encryption` finds the rows of older keys through this.
        Index(
            "ix_messages_encrypted",
            "tenant_id",
            "encryption_key_id",
            postgresql_where=text("encryption_key_id IS NOT NULL"),
        ),
        Index(
            "ix_messages_embedding_hnsw",
            "embedding",
            postgresql_using="hnsw",
            postgresql_with={"m": 16, "ef_construction": 128},
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
        # Each turn's vector in context (the turn before it, then the turn): migration 0011.
        Index(
            "ix_messages_context_embedding_hnsw",
            "context_embedding",
            postgresql_using="hnsw",
            postgresql_with={"m": 16, "ef_construction": 128},
            postgresql_ops={"context_embedding": "vector_cosine_ops"},
        ),
        # The worker's queue of turns that have their own vector but no context vector yet.
        Index(
            "ix_messages_context_pending",
            "tenant_id",
            postgresql_where=text(
                "context_embedding IS NULL AND embedding_status = 'ready' AND kind = 'message'"
            ),
        ),
        Index("ix_messages_content_tsv", "content_tsv", postgresql_using="gin"),
        # Retention finds expired rows through this; reads filter expiry row by row.
        Index(
            "ix_messages_expires_at",
            "expires_at",
            postgresql_where=text("expires_at IS NOT NULL"),
        ),
        # The worker's queue is the table itself: these partial indexes keep claiming and
        # counting cheap.
        Index(
            "ix_messages_embedding_pending",
            "embedding_next_attempt_at",
            postgresql_where=text("embedding_status = 'pending'"),
        ),
        Index(
            "ix_messages_embedding_failed",
            "tenant_id",
            postgresql_where=text("embedding_status = 'failed'"),
        ),
        # GET /v1/messages?metadata=... (and search's metadata filter): containment (@>) through
        # the index instead of a scan of the tenant's rows.
        Index(
            "ix_messages_metadata",
            "metadata",
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
        ),
        # GET /v1/messages?sort=importance pages the tenant's rows in this order.
        Index("ix_messages_tenant_importance", "tenant_id", "importance", "created_at"),
        # The consolidation queue (consolidation/repository.py), claimed oldest turn first.
        Index(
            "ix_messages_consolidation_pending",
            "created_at",
            postgresql_where=text("consolidation_status = 'pending'"),
        ),
        # 16 partitions, messages_p00 … messages_p15 (migration 0008): a tenant's rows and its
        # own HNSW graph share a partition with about a sixteenth of the other tenants.
        {"postgresql_partition_by": "HASH (tenant_id)"},
    )

    # tenant_id leads every key so the table can be distributed by tenant later.
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str | None] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16), server_default=Kind.message.value)
    content: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, server_default="{}")
    importance: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    client_message_id: Mapped[str | None] = mapped_column(String(128))
    # The dimension is fixed by the migration; the type here needs none to bind or read.
    # Deferred: parsing 384 floats per row is wasted work for every read that only shows the text.
    embedding: Mapped[list[float] | None] = mapped_column(Vector(), deferred=True)
    # The vector of the previous turn of the conversation and this one, by the same model
    # (MEMORY_CONTEXT_VECTORS); NULL until the worker fills it. Search compares a query with both.
    context_embedding: Mapped[list[float] | None] = mapped_column(Vector(), deferred=True)
    embedding_model: Mapped[str | None] = mapped_column(String(128))
    embedding_status: Mapped[str] = mapped_column(String(16), server_default="pending")
    embedding_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    # The worker's queue: a pending row is due once this time has passed (a lease pushes it ahead).
    embedding_next_attempt_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    embedding_lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    embedding_lease_owner: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    embedding_error: Mapped[str | None] = mapped_column(Text)
    embedded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The client gave the vector with the message (migration 0013): stored as given, never
    # embedded again by the worker or `reembed` (until a content edit without a new vector).
    embedding_supplied: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # X-Request-ID of the request that stored the message: the worker's log lines about its
    # embedding carry it, so one id follows the message from the API to its vector.
    request_id: Mapped[str | None] = mapped_column(String(128))
    # Past this time the message is never read again (every read filters it); retention deletes it.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The kinds of personal data found in the content (PII mode detect or redact), e.g. {email}.
    pii_kinds: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    # Usage feedback (POST /v1/messages/{id}/usage): how often the memory was used, with which
    # outcome, and when last; search ranks repeated failures lower and counts recency from use.
    use_count: Mapped[int] = mapped_column(Integer, server_default="0")
    success_count: Mapped[int] = mapped_column(Integer, server_default="0")
    failure_count: Mapped[int] = mapped_column(Integer, server_default="0")
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Derived memories (consolidation/): the turns a fact or summary was distilled from, how sure
    # the extraction was, and, once a newer fact replaced it, which one and from when.
    source_message_ids: Mapped[list[uuid.UUID] | None] = mapped_column(ARRAY(UUID(as_uuid=True)))
    confidence: Mapped[float | None] = mapped_column(Float)
    superseded_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A summary: the created_at of the last turn it covers.
    covers_through: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The consolidation queue: new rows are pending (the column's default), rows stored before
    # migration 0010 and derived rows NULL (nothing to do). Claimed like the embedding queue.
    consolidation_status: Mapped[str | None] = mapped_column(String(16), server_default="pending")
    consolidation_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    consolidation_next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    consolidation_lease_owner: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    consolidation_lease_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True)
    )
    consolidation_error: Mapped[str | None] = mapped_column(Text)
    # The channel (channels/): its TTL, quota, PII rule and encryption apply to the message.
    channel: Mapped[str] = mapped_column(String(50), server_default="default")
    # An encrypted channel's message: `content` is '' and `metadata` {} (the tsvector sees
    # nothing), the two are in `ciphertext` (AES-GCM, kit/crypto.py) under this key of the ring.
    encryption_key_id: Mapped[str | None] = mapped_column(String(64))
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=False)
    content_tsv: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed("to_tsvector('english'::regconfig, content)", persisted=True),
        deferred=True,
    )

    @property
    def is_encrypted(self) -> bool:
        """Stored encrypted (an encrypted channel's row)."""
        return self.encryption_key_id is not None


# Not expired: the condition every read of messages carries, so an expired message is gone for
# readers from the moment it expires (retention deletes the row later). Written for SQL text and
# for expressions; `now()` is the transaction's time, the same for every row of a statement.
UNEXPIRED_SQL = "(expires_at IS NULL OR expires_at > now())"


def unexpired() -> ColumnElement[bool]:
    """UNEXPIRED_SQL as an expression on Message."""
    return or_(Message.expires_at.is_(None), Message.expires_at > func.now())


# Current: not replaced by a newer fact. Default reads (search, listings, the profile) carry it;
# `include_superseded=true` drops it.
CURRENT_SQL = "superseded_by IS NULL"


def current() -> ColumnElement[bool]:
    """CURRENT_SQL as an expression on Message."""
    return Message.superseded_by.is_(None)


@event.listens_for(Message, "load")
@event.listens_for(Message, "refresh")
def _decrypt_on_load(target: Message, context: Any, *_: Any) -> None:
    """An encrypted message read through the ORM shows its plaintext to the code that reads it
    (as committed values: nothing is written back), with the ring of the session's sessionmaker
    (kit/crypto.py); the row itself keeps only the ciphertext."""
    state = inspect(target)
    if "ciphertext" not in state.dict or "encryption_key_id" not in state.dict:
        return
    if target.ciphertext is None or target.encryption_key_id is None:
        return
    session = context.session if context is not None else state.session
    if session is None:
        return
    ring = keyring_of(session)
    content, metadata = open_message(
        ring, target.tenant_id, target.id, target.encryption_key_id, target.ciphertext
    )
    set_committed_value(target, "content", content)
    set_committed_value(target, "metadata_", metadata)


def decrypt_transient(message: Message, ring: EncryptionKeyRing) -> Message:
    """The same for a message built from a RETURNING row (not loaded by the ORM)."""
    if message.ciphertext is not None and message.encryption_key_id is not None:
        message.content, message.metadata_ = open_message(
            ring, message.tenant_id, message.id, message.encryption_key_id, message.ciphertext
        )
    return message
