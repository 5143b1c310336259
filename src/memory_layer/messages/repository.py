"""SQL of the messages domain: insert (idempotently, one or many), read, edit and delete messages."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from pgvector import Vector as VectorValue
from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import Select, Table, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.kit.db.vectors import vector_array_param
from memory_layer.kit.pagination import Keyset, SortOrder
from memory_layer.models.message import EmbeddingStatus, Message
from memory_layer.models.message import unexpired as live
from memory_layer.search.plan import SearchFilters

# One message through SQLAlchemy Core, built once: the ORM's INSERT ... RETURNING of the mapped
# class (a new statement per call, then an entity loaded from the row) was the largest part of a
# POST's own CPU time in the profile (docs/benchmarks.md). It returns every column a message's
# answer shows (not the vector, not the tsvector).
MESSAGES = cast(Table, Message.__table__)
ATTRIBUTE_OF = {prop.columns[0].name: prop.key for prop in Message.__mapper__.column_attrs}
COLUMN_OF = {attribute: column for column, attribute in ATTRIBUTE_OF.items()}
INSERT_ONE = (
    insert(MESSAGES)
    .on_conflict_do_nothing(constraint="uq_messages_tenant_id_client_message_id")
    .returning(*(c for c in MESSAGES.c if c.name not in ("embedding", "content_tsv")))
)


def _by_column(values: dict[str, Any]) -> dict[str, Any]:
    return {COLUMN_OF[attribute]: value for attribute, value in values.items()}


READY = f"'{EmbeddingStatus.ready.value}'"
PENDING = f"'{EmbeddingStatus.pending.value}'"

# One statement for many rows, whatever their number (a batch of POST /v1/messages/batch, a chunk
# of an import): one array per column, unnested into rows (a VALUES list would bind rows x columns
# parameters and hit the protocol's 32,767 limit). A row with a vector is ready; one without is
# pending and due now (the insert trigger NOTIFYs the workers). Rows without a given time are a
# microsecond apart, in order, so the history (ordered by created_at, then id) shows them in the
# order they were sent. ON CONFLICT DO NOTHING without a target skips a row whose id or whose
# client_message_id the tenant already has: an ingested row has a new id, so only its
# client_message_id can conflict; an imported one keeps its id, so importing the same file twice
# stores nothing new.
INSERT_MANY_SQL = text(f"""
INSERT INTO messages (
    tenant_id, id, conversation_id, user_id, role, kind, content, metadata, importance,
    client_message_id, created_at, archived_at, embedding, embedding_model, embedding_status,
    embedded_at, embedding_next_attempt_at, embedding_error, request_id, expires_at, pii_kinds,
    embedding_supplied, channel, encryption_key_id, ciphertext, consolidation_status
)
SELECT :tenant_id, r.id, r.conversation_id, r.user_id, r.role, r.kind, r.content,
       CAST(r.metadata AS jsonb), r.importance, r.client_message_id,
       coalesce(r.created_at, now() + make_interval(secs => (r.ord - 1) / 1e6)),
       r.archived_at,
       r.embedding,
       CASE WHEN r.embedding IS NULL THEN NULL ELSE coalesce(r.embedding_model, :model) END,
       CASE WHEN r.embedding IS NULL THEN {PENDING} ELSE {READY} END,
       CASE WHEN r.embedding IS NULL THEN NULL ELSE now() END,
       CASE WHEN r.embedding IS NULL THEN now() END,
       r.embedding_error, r.request_id, r.expires_at,
       coalesce(string_to_array(nullif(r.pii_kinds, ''), ','), '{{}}'),
       r.embedding IS NOT NULL AND r.embedding_model IS NOT NULL,
       r.channel, r.encryption_key_id, r.ciphertext,
       CASE WHEN r.ciphertext IS NULL THEN 'pending' END
FROM unnest(
    CAST(:ids AS uuid[]), CAST(:conversation_ids AS text[]), CAST(:user_ids AS text[]),
    CAST(:roles AS text[]), CAST(:kinds AS text[]), CAST(:contents AS text[]),
    CAST(:metadata AS text[]), CAST(:importances AS float8[]), CAST(:client_message_ids AS text[]),
    CAST(:created_ats AS timestamptz[]), CAST(:archived_ats AS timestamptz[]), :embeddings,
    CAST(:embedding_errors AS text[]), CAST(:request_ids AS text[]),
    CAST(:expires_ats AS timestamptz[]), CAST(:pii_kinds AS text[]),
    CAST(:embedding_models AS text[]),
    CAST(:channels AS text[]), CAST(:encryption_key_ids AS text[]), CAST(:ciphertexts AS bytea[])
) WITH ORDINALITY
  AS r(id, conversation_id, user_id, role, kind, content, metadata, importance, client_message_id,
       created_at, archived_at, embedding, embedding_error, request_id, expires_at, pii_kinds,
       embedding_model, channel, encryption_key_id, ciphertext, ord)
ON CONFLICT DO NOTHING
RETURNING id, embedding_status
""").bindparams(vector_array_param("embeddings"))


@dataclass(frozen=True)
class NewRow:
    """One row of a bulk insert; `embedding` None stores it pending, `created_at` None at the
    database's time."""

    id: uuid.UUID
    conversation_id: str
    user_id: str | None
    role: str
    kind: str
    content: str
    metadata: dict[str, Any]
    importance: float
    client_message_id: str | None
    created_at: datetime | None
    embedding: list[float] | None
    embedding_error: str | None = None
    archived_at: datetime | None = None
    request_id: str | None = None
    expires_at: datetime | None = None
    # The PII kinds found in `content` (a kind is a plain word: the array travels comma-joined).
    pii_kinds: Sequence[str] = ()
    # Set with a vector the client supplied: its model (None: the service's model embedded it).
    embedding_model: str | None = None
    # channels/: the row's channel; on an encrypted one `content` is '' and `metadata` {}, the
    # two sealed in `ciphertext` under `encryption_key_id` (not consolidated: NULL status).
    channel: str = "default"
    encryption_key_id: str | None = None
    ciphertext: bytes | None = None


class TimePosition(BaseModel):
    """Where a page of messages in time order ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    created_at: AwareDatetime
    id: uuid.UUID


class ImportancePosition(TimePosition):
    """Where a page of messages in importance order ends."""

    importance: float


# GET /v1/messages orders: by (created_at, id), served by (tenant_id, created_at); by
# (importance, created_at, id), served by (tenant_id, importance, created_at). Either direction.
BY_TIME = {
    order: Keyset(
        TimePosition, {"created_at": Message.created_at, "id": Message.id}, order=order
    )
    for order in SortOrder
}
BY_IMPORTANCE = {
    order: Keyset(
        ImportancePosition,
        {"importance": Message.importance, "created_at": Message.created_at, "id": Message.id},
        order=order,
    )
    for order in SortOrder
}


class MessageRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, tenant_id: str, message_id: uuid.UUID) -> Message | None:
        result = await self.session.execute(
            select(Message).where(Message.tenant_id == tenant_id, Message.id == message_id, live())
        )
        return result.scalar_one_or_none()

    def listing(self, tenant_id: str, filters: SearchFilters) -> Select[Message]:
        """The tenant's live messages that pass the filters (the same as search's), to page in
        BY_TIME or BY_IMPORTANCE order."""
        statement = select(Message).where(Message.tenant_id == tenant_id, live())
        if not filters.include_archived:
            statement = statement.where(Message.archived_at.is_(None))
        for name in ("conversation_id", "user_id", "role", "kind"):
            value = getattr(filters, name)
            if value is not None:
                statement = statement.where(getattr(Message, name) == value)
        if filters.kinds is not None:
            statement = statement.where(Message.kind.in_(filters.kinds))
        if filters.pii_kind is not None:
            statement = statement.where(Message.pii_kinds.contains([filters.pii_kind]))
        if filters.importance_min is not None:
            statement = statement.where(Message.importance >= filters.importance_min)
        if filters.since is not None:
            statement = statement.where(Message.created_at >= filters.since)
        if filters.until is not None:
            statement = statement.where(Message.created_at <= filters.until)
        if filters.channel is not None:
            statement = statement.where(Message.channel == filters.channel)
        if filters.metadata is not None:
            # jsonb @>: served by ix_messages_metadata (jsonb_path_ops) when selective.
            statement = statement.where(Message.metadata_.contains(filters.metadata))
        return statement

    async def get_for_update(self, tenant_id: str, message_id: uuid.UUID) -> Message | None:
        """The row, locked until the transaction ends, read afresh from the database."""
        result = await self.session.execute(
            select(Message)
            .where(Message.tenant_id == tenant_id, Message.id == message_id, live())
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return result.scalar_one_or_none()

    async def get_by_client_id(self, tenant_id: str, client_message_id: str) -> Message | None:
        result = await self.session.execute(
            select(Message).where(
                Message.tenant_id == tenant_id, Message.client_message_id == client_message_id
            )
        )
        return result.scalar_one_or_none()

    async def get_by_client_ids(
        self, tenant_id: str, client_message_ids: list[str]
    ) -> dict[str, Message]:
        """The tenant's messages with these client_message_ids, by that id."""
        result = await self.session.execute(
            select(Message).where(
                Message.tenant_id == tenant_id,
                Message.client_message_id.in_(client_message_ids),
            )
        )
        return {
            message.client_message_id: message
            for message in result.scalars()
            if message.client_message_id is not None
        }

    async def stored_client_ids(self, tenant_id: str, client_message_ids: list[str]) -> set[str]:
        """Which of these client_message_ids the tenant already has (ids only, no rows)."""
        result = await self.session.execute(
            select(Message.client_message_id).where(
                Message.tenant_id == tenant_id,
                Message.client_message_id.in_(client_message_ids),
            )
        )
        return {value for value in result.scalars() if value is not None}

    async def insert_if_new(self, values: dict[str, Any]) -> Message | None:
        """Insert a message (`values` by the model's attribute names); None when its (tenant_id,
        client_message_id) already exists. The message answered is built from the RETURNING row
        and is not tracked by the session."""
        row = (await self.session.execute(INSERT_ONE, _by_column(values))).first()
        if row is None:
            return None
        return Message(**{ATTRIBUTE_OF[name]: value for name, value in row._mapping.items()})

    async def insert_many(
        self, tenant_id: str, rows: Sequence[NewRow], model: str
    ) -> dict[uuid.UUID, str]:
        """Insert the rows in one statement; the embedding status of each row inserted, by id (a
        row whose id or client_message_id the tenant already has is skipped)."""
        if not rows:
            return {}
        result = await self.session.execute(
            INSERT_MANY_SQL,
            {
                "tenant_id": tenant_id,
                "model": model,
                "ids": [row.id for row in rows],
                "conversation_ids": [row.conversation_id for row in rows],
                "user_ids": [row.user_id for row in rows],
                "roles": [row.role for row in rows],
                "kinds": [row.kind for row in rows],
                "contents": [row.content for row in rows],
                "metadata": [
                    json.dumps(row.metadata, ensure_ascii=False, separators=(",", ":"))
                    for row in rows
                ],
                "importances": [row.importance for row in rows],
                "client_message_ids": [row.client_message_id for row in rows],
                "created_ats": [row.created_at for row in rows],
                "archived_ats": [row.archived_at for row in rows],
                "embeddings": [
                    VectorValue(row.embedding) if row.embedding is not None else None
                    for row in rows
                ],
                "embedding_errors": [row.embedding_error for row in rows],
                "request_ids": [row.request_id for row in rows],
                "expires_ats": [row.expires_at for row in rows],
                "pii_kinds": [",".join(row.pii_kinds) for row in rows],
                "embedding_models": [row.embedding_model for row in rows],
                "channels": [row.channel for row in rows],
                "encryption_key_ids": [row.encryption_key_id for row in rows],
                "ciphertexts": [row.ciphertext for row in rows],
            },
        )
        return {row.id: row.embedding_status for row in result}

    async def update(
        self,
        tenant_id: str,
        message_id: uuid.UUID,
        values: dict[str, Any],
        *,
        requeue_embedding: bool = False,
    ) -> Message:
        """Write the changed fields; with `requeue_embedding` the vector is dropped and the row
        queued afresh for the worker (the update trigger NOTIFYs it)."""
        if requeue_embedding:
            values = {
                **values,
                "embedding": None,
                "context_embedding": None,
                "embedding_model": None,
                "embedding_supplied": False,
                "embedded_at": None,
                "embedding_status": EmbeddingStatus.pending.value,
                "embedding_attempts": 0,
                "embedding_next_attempt_at": func.now(),
                "embedding_lease_owner": None,
                "embedding_lease_expires_at": None,
            }
        result = await self.session.execute(
            update(Message)
            .where(Message.tenant_id == tenant_id, Message.id == message_id)
            .values(**values)
            .returning(Message)
            .execution_options(populate_existing=True)
        )
        return result.scalar_one()

    async def record_usage(
        self, tenant_id: str, message_id: uuid.UUID, *, success: bool, failure: bool
    ) -> Message | None:
        """Count one use (and its outcome) in one statement, so concurrent uses all count; the
        message as it now is, or None when the tenant has no such live message."""
        result = await self.session.execute(
            update(Message)
            .where(Message.tenant_id == tenant_id, Message.id == message_id, live())
            .values(
                use_count=Message.use_count + 1,
                success_count=Message.success_count + int(success),
                failure_count=Message.failure_count + int(failure),
                last_used_at=func.now(),
            )
            .returning(Message)
            .execution_options(populate_existing=True)
        )
        return result.scalar_one_or_none()

    async def delete(self, tenant_id: str, message_id: uuid.UUID) -> int:
        result = await self.session.execute(
            delete(Message)
            .where(Message.tenant_id == tenant_id, Message.id == message_id, live())
            .returning(Message.id)
        )
        return len(result.all())
