"""SQL of the transfer domain: stream a tenant's messages out, insert imported ones."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pgvector import Vector
from sqlalchemy import ColumnElement, Row, Text, cast, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.kit.db.vectors import vector_array_param
from memory_layer.models.message import EmbeddingStatus, Message

PENDING = f"'{EmbeddingStatus.pending.value}'"
READY = f"'{EmbeddingStatus.ready.value}'"

# One statement per chunk: the lines travel as parallel arrays. ON CONFLICT DO NOTHING without a
# target skips both a message id the tenant already has and a client_message_id it already uses,
# so importing the same file twice stores nothing new. A row arrives with its vector (ready) or
# without (pending, due now: the insert trigger wakes the workers).
INSERT_SQL = text(f"""
INSERT INTO messages (
    tenant_id, id, client_message_id, conversation_id, user_id, role, kind, content, metadata,
    importance, created_at, archived_at, embedding, embedding_model, embedding_status,
    embedded_at, embedding_next_attempt_at
)
SELECT :tenant_id, v.id, v.client_message_id, v.conversation_id, v.user_id, v.role, v.kind,
       v.content, CAST(v.metadata AS jsonb), v.importance, v.created_at, v.archived_at,
       v.embedding,
       CASE WHEN v.embedding IS NULL THEN NULL ELSE :model END,
       CASE WHEN v.embedding IS NULL THEN {PENDING} ELSE {READY} END,
       CASE WHEN v.embedding IS NULL THEN NULL ELSE now() END,
       CASE WHEN v.embedding IS NULL THEN now() ELSE NULL END
FROM unnest(
    CAST(:ids AS uuid[]), CAST(:client_message_ids AS text[]), CAST(:conversation_ids AS text[]),
    CAST(:user_ids AS text[]), CAST(:roles AS text[]), CAST(:kinds AS text[]),
    CAST(:contents AS text[]), CAST(:metadata AS text[]), CAST(:importances AS float8[]),
    CAST(:created_ats AS timestamptz[]), CAST(:archived_ats AS timestamptz[]), :embeddings
) AS v(id, client_message_id, conversation_id, user_id, role, kind, content, metadata,
       importance, created_at, archived_at, embedding)
ON CONFLICT DO NOTHING
RETURNING id, embedding_status
""").bindparams(vector_array_param("embeddings"))

EXISTING_SQL = text(
    "SELECT id FROM messages WHERE tenant_id = :tenant_id AND id = ANY(CAST(:ids AS uuid[]))"
)


@dataclass(frozen=True)
class ExportFilter:
    tenant_id: str
    conversation_id: str | None
    user_id: str | None
    since: datetime | None


@dataclass(frozen=True)
class NewRow:
    """One imported message as the insert takes it; `embedding` None queues it for the worker."""

    id: uuid.UUID
    client_message_id: str | None
    conversation_id: str
    user_id: str | None
    role: str
    kind: str
    content: str
    metadata_json: str
    importance: float
    created_at: datetime
    archived_at: datetime | None
    embedding: list[float] | None


def _where(spec: ExportFilter) -> list[ColumnElement[bool]]:
    # tenant_id first and always: no filter combination reaches another tenant's rows.
    clauses = [Message.tenant_id == spec.tenant_id]
    if spec.conversation_id is not None:
        clauses.append(Message.conversation_id == spec.conversation_id)
    if spec.user_id is not None:
        clauses.append(Message.user_id == spec.user_id)
    if spec.since is not None:
        clauses.append(Message.created_at >= spec.since)
    return clauses


class TransferRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def stream_messages(
        self, spec: ExportFilter, *, include_embeddings: bool, batch_rows: int
    ) -> AsyncGenerator[Sequence[Row[Any]], None]:
        """The filtered messages in (created_at, id) order, `batch_rows` at a time from a
        server-side cursor: memory holds one batch, however many rows match."""
        columns: list[Any] = [
            Message.id, Message.client_message_id, Message.conversation_id, Message.user_id,
            Message.role, Message.kind, Message.content, Message.metadata_, Message.importance,
            Message.created_at, Message.archived_at, Message.embedding_model,
        ]
        if include_embeddings:
            # pgvector's text form is already a JSON array of the stored float4 values.
            columns.append(cast(Message.embedding, Text).label("embedding"))
        statement = (
            select(*columns).where(*_where(spec)).order_by(Message.created_at, Message.id)
        )
        result = await self.session.stream(statement, execution_options={"yield_per": batch_rows})
        try:
            async for batch in result.partitions():
                yield batch
        finally:
            await result.close()

    async def count(self, spec: ExportFilter) -> int:
        result = await self.session.execute(
            select(func.count()).select_from(Message).where(*_where(spec))
        )
        return int(result.scalar_one())

    async def insert_new(
        self, tenant_id: str, rows: Sequence[NewRow], model: str
    ) -> list[tuple[uuid.UUID, str]]:
        """Insert the rows the tenant does not have yet; (id, embedding status) of each stored."""
        result = await self.session.execute(
            INSERT_SQL,
            {
                "tenant_id": tenant_id,
                "model": model,
                "ids": [r.id for r in rows],
                "client_message_ids": [r.client_message_id for r in rows],
                "conversation_ids": [r.conversation_id for r in rows],
                "user_ids": [r.user_id for r in rows],
                "roles": [r.role for r in rows],
                "kinds": [r.kind for r in rows],
                "contents": [r.content for r in rows],
                "metadata": [r.metadata_json for r in rows],
                "importances": [r.importance for r in rows],
                "created_ats": [r.created_at for r in rows],
                "archived_ats": [r.archived_at for r in rows],
                "embeddings": [None if r.embedding is None else Vector(r.embedding) for r in rows],
            },
        )
        return [(row.id, row.embedding_status) for row in result]

    async def existing_ids(self, tenant_id: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not ids:
            return set()
        result = await self.session.execute(EXISTING_SQL, {"tenant_id": tenant_id, "ids": list(ids)})
        return {row.id for row in result}
