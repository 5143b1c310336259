"""SQL of the transfer domain: stream a tenant's messages out, find the ones an import has."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Text, cast, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.models.message import Message, unexpired

EXISTING_SQL = text(
    "SELECT id FROM messages WHERE tenant_id = :tenant_id AND id = ANY(CAST(:ids AS uuid[]))"
)


@dataclass(frozen=True)
class ExportFilter:
    tenant_id: str
    conversation_id: str | None
    user_id: str | None
    since: datetime | None
    channel: str | None = None


def _where(spec: ExportFilter) -> list[ColumnElement[bool]]:
    # tenant_id first and always: no filter combination reaches another tenant's rows.
    clauses = [Message.tenant_id == spec.tenant_id, unexpired()]
    if spec.conversation_id is not None:
        clauses.append(Message.conversation_id == spec.conversation_id)
    if spec.user_id is not None:
        clauses.append(Message.user_id == spec.user_id)
    if spec.since is not None:
        clauses.append(Message.created_at >= spec.since)
    if spec.channel is not None:
        clauses.append(Message.channel == spec.channel)
    return clauses


class TransferRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def stream_messages(
        self, spec: ExportFilter, *, include_embeddings: bool, batch_rows: int
    ) -> AsyncGenerator[Sequence[Row[Any]], None]:
        """The filtered messages in (created_at, id) order, `batch_rows` at a time from a
        server-side cursor: memory holds one batch, however many rows match. The columns are
        named as the fields of the export's line (`ExportedMessage`)."""
        columns: list[Any] = [
            Message.id.label("message_id"), Message.client_message_id, Message.conversation_id,
            Message.user_id, Message.role, Message.kind, Message.content,
            Message.metadata_.label("metadata"), Message.importance, Message.created_at,
            Message.archived_at, Message.expires_at, Message.pii_kinds, Message.embedding_model,
            # An encrypted channel's row: the service opens it.
            Message.encryption_key_id, Message.ciphertext,
        ]
        if include_embeddings:
            # pgvector's text form is already a JSON array of the stored float4 values.
            columns.append(cast(Message.embedding, Text).label("embedding_json"))
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

    async def existing_ids(self, tenant_id: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not ids:
            return set()
        result = await self.session.execute(EXISTING_SQL, {"tenant_id": tenant_id, "ids": list(ids)})
        return {row.id for row in result}
