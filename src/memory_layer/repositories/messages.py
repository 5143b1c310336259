"""SQL for the messages table."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.models.message import Message
from memory_layer.services.scoring import ScoreWeights


@dataclass(frozen=True)
class SearchFilters:
    conversation_id: str | None = None
    role: str | None = None
    importance_min: float | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class ScoredRow:
    """A search hit: the message's public fields and its ranking signals."""

    id: uuid.UUID
    conversation_id: str
    user_id: str | None
    role: str
    content: str
    metadata: dict[str, Any]
    importance: float
    created_at: datetime
    similarity: float
    recency: float
    score: float


# The search is plain SQL text: building an expression tree per request cost more than the query.
# Only fixed fragments are ever spliced in ({filters}); every value travels as a bind parameter.
SEARCH_SQL = """
WITH candidates AS (
    SELECT tenant_id, id, embedding <=> CAST(:query_vector AS vector) AS distance
    FROM messages
    WHERE tenant_id = :tenant_id
      AND archived_at IS NULL
      AND embedding_status = 'ready'
      AND embedding IS NOT NULL{filters}
    ORDER BY embedding <=> CAST(:query_vector AS vector)
    LIMIT :candidate_pool
), signals AS (
    SELECT m.id, m.conversation_id, m.user_id, m.role, m.content, m.metadata, m.importance,
           m.created_at,
           greatest(0.0, 1.0 - c.distance) AS similarity,
           power(0.5, greatest(0.0, extract(epoch FROM now() - m.created_at) / 3600.0)
                      / :half_life_hours) AS recency
    FROM candidates c
    JOIN messages m ON m.tenant_id = c.tenant_id AND m.id = c.id
)
SELECT *,
       (:w_similarity * similarity + :w_importance * importance + :w_recency * recency)
       / :w_total AS score
FROM signals
ORDER BY score DESC, created_at DESC, id
LIMIT :top_k
"""

_FILTERS = {
    "conversation_id": "conversation_id = :conversation_id",
    "role": "role = :role",
    "importance_min": "importance >= :importance_min",
    "since": "created_at >= :since",
    "until": "created_at <= :until",
}


def vector_literal(vector: list[float]) -> str:
    return "[" + ",".join(repr(float(v)) for v in vector) + "]"


class MessageRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, tenant_id: str, message_id: uuid.UUID) -> Message | None:
        return await self.session.get(Message, (tenant_id, message_id))

    async def get_by_client_id(self, tenant_id: str, client_message_id: str) -> Message | None:
        result = await self.session.execute(
            select(Message).where(
                Message.tenant_id == tenant_id, Message.client_message_id == client_message_id
            )
        )
        return result.scalar_one_or_none()

    async def insert_if_new(self, values: dict[str, Any]) -> Message | None:
        """Insert a message; None when its (tenant_id, client_message_id) already exists."""
        statement = (
            insert(Message)
            .values(**values)
            .on_conflict_do_nothing(constraint="uq_messages_tenant_id_client_message_id")
            .returning(Message)
        )
        result = await self.session.execute(statement)
        message = result.scalar_one_or_none()
        await self.session.flush()
        return message

    async def search(
        self,
        tenant_id: str,
        query_vector: list[float],
        *,
        top_k: int,
        candidate_pool: int,
        filters: SearchFilters,
        weights: ScoreWeights,
    ) -> list[ScoredRow]:
        """Nearest neighbours through the HNSW index, re-ranked by the final score in SQL.

        hnsw.ef_search and hnsw.iterative_scan are set on every connection by the engine.
        """

        params: dict[str, Any] = {
            "tenant_id": tenant_id,
            "query_vector": vector_literal(query_vector),
            "candidate_pool": candidate_pool,
            "top_k": top_k,
            "half_life_hours": weights.half_life_hours,
            "w_similarity": weights.similarity,
            "w_importance": weights.importance,
            "w_recency": weights.recency,
            "w_total": weights.total,
        }
        fragments = []
        for name, fragment in _FILTERS.items():
            value = getattr(filters, name)
            if value is not None:
                fragments.append(f"\n      AND {fragment}")
                params[name] = value
        statement = text(SEARCH_SQL.format(filters="".join(fragments)))
        result = await self.session.execute(statement, params)
        return [
            ScoredRow(
                id=row.id,
                conversation_id=row.conversation_id,
                user_id=row.user_id,
                role=row.role,
                content=row.content,
                metadata=row.metadata,
                importance=float(row.importance),
                created_at=row.created_at,
                similarity=float(row.similarity),
                recency=float(row.recency),
                score=float(row.score),
            )
            for row in result
        ]

    def _retention_conditions(
        self, tenants: list[str] | None, cutoff: datetime, importance_below: float
    ) -> list[Any]:
        conditions: list[Any] = [
            Message.created_at < cutoff,
            Message.importance < importance_below,
        ]
        if tenants is not None:
            conditions.append(Message.tenant_id.in_(tenants))
        return conditions

    async def try_retention_lock(self) -> bool:
        """Transaction-scoped advisory lock so retention runs never overlap."""
        result = await self.session.execute(
            text("SELECT pg_try_advisory_xact_lock(hashtext('memory-layer:retention'))")
        )
        return bool(result.scalar_one())

    async def count_retention_candidates(
        self, tenants: list[str] | None, cutoff: datetime, importance_below: float, *,
        include_archived: bool,
    ) -> int:
        conditions = self._retention_conditions(tenants, cutoff, importance_below)
        if not include_archived:
            conditions.append(Message.archived_at.is_(None))
        result = await self.session.execute(
            select(func.count()).select_from(Message).where(and_(*conditions))
        )
        return int(result.scalar_one())

    async def archive_older_than(
        self, tenants: list[str] | None, cutoff: datetime, importance_below: float
    ) -> int:
        conditions = self._retention_conditions(tenants, cutoff, importance_below)
        conditions.append(Message.archived_at.is_(None))
        result = await self.session.execute(
            update(Message).where(and_(*conditions)).values(archived_at=func.now())
        )
        await self.session.flush()
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def delete_older_than(
        self, tenants: list[str] | None, cutoff: datetime, importance_below: float
    ) -> int:
        conditions = self._retention_conditions(tenants, cutoff, importance_below)
        result = await self.session.execute(delete(Message).where(and_(*conditions)))
        await self.session.flush()
        return int(result.rowcount)  # type: ignore[attr-defined]
