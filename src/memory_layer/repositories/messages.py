"""SQL for the messages table."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.models.message import EmbeddingStatus, Message
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
    message: Message
    similarity: float
    recency: float
    score: float


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
        ef_search: int,
    ) -> list[ScoredRow]:
        """Nearest neighbours through the HNSW index, re-ranked by the final score in SQL."""
        # Iterative scans keep walking the graph until enough rows pass the tenant filter, so a
        # small tenant among many is not starved (pgvector >= 0.8).
        await self.session.execute(text(f"SET LOCAL hnsw.ef_search = {int(ef_search)}"))
        await self.session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))

        distance = Message.embedding.cosine_distance(query_vector)
        conditions = [
            Message.tenant_id == tenant_id,
            Message.archived_at.is_(None),
            Message.embedding_status == EmbeddingStatus.ready.value,
            Message.embedding.is_not(None),
        ]
        if filters.conversation_id is not None:
            conditions.append(Message.conversation_id == filters.conversation_id)
        if filters.role is not None:
            conditions.append(Message.role == filters.role)
        if filters.importance_min is not None:
            conditions.append(Message.importance >= filters.importance_min)
        if filters.since is not None:
            conditions.append(Message.created_at >= filters.since)
        if filters.until is not None:
            conditions.append(Message.created_at <= filters.until)

        candidates = (
            select(Message.tenant_id, Message.id, distance.label("distance"))
            .where(and_(*conditions))
            .order_by(distance)
            .limit(candidate_pool)
            .cte("candidates")
        )
        similarity = func.greatest(literal(0.0), literal(1.0) - candidates.c.distance)
        age_hours = func.greatest(
            literal(0.0),
            func.extract("epoch", func.now() - Message.created_at) / literal(3600.0),
        )
        recency = func.power(literal(0.5), age_hours / literal(weights.half_life_hours))
        score = (
            literal(weights.similarity) * similarity
            + literal(weights.importance) * Message.importance
            + literal(weights.recency) * recency
        ) / literal(weights.total)
        statement = (
            select(
                Message,
                similarity.label("similarity"),
                recency.label("recency"),
                score.label("score"),
            )
            .join(
                candidates,
                and_(candidates.c.tenant_id == Message.tenant_id, candidates.c.id == Message.id),
            )
            .order_by(score.desc(), Message.created_at.desc(), Message.id)
            .limit(top_k)
        )
        result = await self.session.execute(statement)
        return [
            ScoredRow(
                message=row[0],
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
