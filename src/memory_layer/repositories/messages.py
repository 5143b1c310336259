"""SQL for the messages table."""

from __future__ import annotations

import json
import re
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
    user_id: str | None = None
    role: str | None = None
    importance_min: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    metadata: dict[str, Any] | None = None
    include_archived: bool = False


@dataclass(frozen=True)
class ScoredRow:
    """A search hit: the message's public fields and every signal that ranked it."""

    id: uuid.UUID
    conversation_id: str
    user_id: str | None
    role: str
    content: str
    metadata: dict[str, Any]
    importance: float
    created_at: datetime
    embedding_status: str
    vector_rank: int | None
    similarity: float | None
    keyword_rank: int | None
    keyword_score: float | None
    fused: float
    relevance: float
    recency: float
    score: float
    embedding: list[float] | None = None


# The search is plain SQL text: building an expression tree per request cost more than the query.
# Only fixed fragments are ever spliced in ({filters}, the mode's CTEs); every value travels as a
# bind parameter.
#
# Candidates come from two places, each limited to :candidate_pool rows of the tenant:
#   vector_hits   nearest neighbours through the HNSW index (rows embedded by the current model)
#   keyword_hits  full-text matches through the GIN index, ranked by ts_rank_cd (every row, so a
#                 message whose embedding is still pending is already found)
# and are fused by reciprocal rank fusion: fused = sum over lists of 1 / (rrf_k + rank).
VECTOR_HITS = """
vector_hits AS (
    SELECT tenant_id, id, distance,
           row_number() OVER (ORDER BY distance, id) AS vector_rank
    FROM (
        SELECT tenant_id, id, embedding <=> CAST(:query_vector AS vector) AS distance
        FROM messages
        WHERE tenant_id = :tenant_id
          AND embedding_status = 'ready'
          AND embedding_model = :model{filters}
        ORDER BY {vector_order}
        LIMIT :candidate_pool
    ) nearest
)"""

# The HNSW index serves `ORDER BY embedding <=> q` only; the `+ 0` form makes PostgreSQL compare
# every one of the tenant's vectors (through the tenant index): exact, and for a small tenant
# faster than walking a graph built over everyone's rows.
INDEX_ORDER = "embedding <=> CAST(:query_vector AS vector)"
EXACT_ORDER = "(embedding <=> CAST(:query_vector AS vector)) + 0"

NO_VECTOR_HITS = """
vector_hits AS (
    SELECT NULL::varchar AS tenant_id, NULL::uuid AS id, NULL::float8 AS distance,
           NULL::bigint AS vector_rank
    WHERE false
)"""

KEYWORD_HITS = """
keyword_hits AS (
    SELECT tenant_id, id, keyword_score,
           row_number() OVER (ORDER BY keyword_score DESC, id) AS keyword_rank
    FROM (
        SELECT tenant_id, id,
               (ts_rank_cd(content_tsv, tsq, 32)
                + CASE WHEN content_tsv @@ all_terms THEN 1.0 ELSE 0.0 END) / 2.0 AS keyword_score
        FROM messages, {tsquery} AS tsq, websearch_to_tsquery('english', :query_text) AS all_terms
        WHERE tenant_id = :tenant_id
          AND content_tsv @@ tsq{filters}
        ORDER BY keyword_score DESC
        LIMIT :candidate_pool
    ) matched
)"""

NO_KEYWORD_HITS = """
keyword_hits AS (
    SELECT NULL::varchar AS tenant_id, NULL::uuid AS id, NULL::float8 AS keyword_score,
           NULL::bigint AS keyword_rank
    WHERE false
)"""

# Relevance in [0, 1] per mode: cosine similarity (vector); the keyword score (keyword);
# for hybrid, by MEMORY_SEARCH_FUSION, either ("weighted") the similarity plus a keyword bonus,
# min(1, similarity + keyword_weight * keyword_score), or ("rrf") the reciprocal-rank-fused score
# over its maximum 2/(rrf_k+1). docs/evaluation.md has the measurements behind the default:
# RRF flattens the top ranks so much that importance and recency decide between a strong and a
# weak match, and a convex mix halves the similarity scale for the same reason.
RELEVANCE = {
    "vector": "similarity",
    "keyword": "coalesce(keyword_score, 0.0)",
    "rrf": "fused * (:rrf_k + 1) / 2.0",
    "weighted": "least(1.0, coalesce(similarity, 0.0) + :keyword_weight * coalesce(keyword_score, 0.0))",
}

# A keyword-only hit's similarity is computed from its stored vector (a few dozen rows at most),
# so every hit that has a vector of the current model explains itself fully.
SIMILARITY = {
    "keyword": "NULL::float8",
    "other": """CASE WHEN f.distance IS NOT NULL THEN greatest(0.0, 1.0 - f.distance)
                WHEN m.embedding_status = 'ready' AND m.embedding_model = :model
                THEN greatest(0.0, 1.0 - (m.embedding <=> CAST(:query_vector AS vector)))
                END""",
}

SEARCH_SQL = """
WITH {vector_hits}, {keyword_hits},
fused AS (
    SELECT coalesce(v.tenant_id, k.tenant_id) AS tenant_id, coalesce(v.id, k.id) AS id,
           v.distance, v.vector_rank, k.keyword_score, k.keyword_rank,
           coalesce(1.0 / (:rrf_k + v.vector_rank), 0.0)
             + coalesce(1.0 / (:rrf_k + k.keyword_rank), 0.0) AS fused
    FROM vector_hits v
    FULL JOIN keyword_hits k ON k.tenant_id = v.tenant_id AND k.id = v.id
), hits AS (
    SELECT m.id, m.conversation_id, m.user_id, m.role, m.content, m.metadata, m.importance,
           m.created_at, m.embedding_status,{embedding}
           f.vector_rank, {similarity} AS similarity,
           f.keyword_rank, f.keyword_score, f.fused,
           power(0.5, greatest(0.0, extract(epoch FROM now() - m.created_at) / 3600.0)
                      / :half_life_hours) AS recency
    FROM fused f
    JOIN messages m ON m.tenant_id = f.tenant_id AND m.id = f.id
), signals AS (
    SELECT *, {relevance} AS relevance FROM hits
), scored AS (
    SELECT *,
           (:w_similarity * relevance + :w_importance * importance + :w_recency * recency)
           / :w_total AS score
    FROM signals
)
SELECT * FROM scored{min_score}
ORDER BY score DESC, created_at DESC, id
LIMIT :top_k
"""

_FILTERS = {
    "conversation_id": "conversation_id = :conversation_id",
    "user_id": "user_id = :user_id",
    "role": "role = :role",
    "importance_min": "importance >= :importance_min",
    "since": "created_at >= :since",
    "until": "created_at <= :until",
    "metadata": "metadata @> CAST(:metadata AS jsonb)",
}


# A question in plain words matches messages holding any of its terms: requiring all of them, as
# websearch syntax does, finds almost nothing for a question like "what did the landlord say about
# the boiler?". The keyword score is half cover density (ts_rank_cd / (1 + ts_rank_cd)) and half
# "every term matched" (websearch semantics, so a code like KX-4471-B must match as a phrase):
# full-text ranking has no IDF, and without that half a rare exact token weighs no more than a
# common word. Queries that use websearch operators (quotes, OR, -word) keep their strict meaning.
_WEBSEARCH_OPERATORS = re.compile(r'"|\bor\b|(?:^|\s)-\w', re.IGNORECASE)
# The lexemes are already stemmed by the english parser; 'simple' reads them back unchanged.
ANY_TERM_TSQUERY = (
    "to_tsquery('simple', replace(websearch_to_tsquery('english', :query_text)::text, ' & ', ' | '))"
)
WEBSEARCH_TSQUERY = "websearch_to_tsquery('english', :query_text)"


def uses_websearch_syntax(query: str) -> bool:
    return bool(_WEBSEARCH_OPERATORS.search(query))


def build_search_sql(
    mode: str,
    filters: SearchFilters,
    *,
    with_embedding: bool,
    min_score: bool,
    fusion: str = "weighted",
    strict_keywords: bool = False,
    exact: bool = False,
) -> tuple[str, dict[str, Any]]:
    """The search statement for one mode and filter set, and the filter parameters it binds."""
    fragments: list[str] = []
    params: dict[str, Any] = {}
    if not filters.include_archived:
        fragments.append("archived_at IS NULL")
    for name, fragment in _FILTERS.items():
        value = getattr(filters, name)
        if value is not None:
            fragments.append(fragment)
            params[name] = json.dumps(value) if name == "metadata" else value
    where = "".join(f"\n          AND {fragment}" for fragment in fragments)
    sql = SEARCH_SQL.format(
        vector_hits=(VECTOR_HITS if mode != "keyword" else NO_VECTOR_HITS).format(
            filters=where, vector_order=EXACT_ORDER if exact else INDEX_ORDER
        ),
        keyword_hits=(KEYWORD_HITS if mode != "vector" else NO_KEYWORD_HITS).format(
            filters=where, tsquery=WEBSEARCH_TSQUERY if strict_keywords else ANY_TERM_TSQUERY
        ),
        relevance=RELEVANCE[fusion if mode == "hybrid" else mode],
        similarity=SIMILARITY["keyword" if mode == "keyword" else "other"],
        embedding="\n           m.embedding::text AS embedding," if with_embedding else "",
        min_score="\nWHERE score >= :min_score" if min_score else "",
    )
    return sql, params


def vector_literal(vector: list[float]) -> str:
    return "[" + ",".join(repr(float(v)) for v in vector) + "]"


def _parse_vector(value: str | None) -> list[float] | None:
    if value is None:
        return None
    return [float(v) for v in value.strip("[]").split(",")]


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
        query_text: str,
        query_vector: list[float] | None,
        *,
        mode: str,
        model: str,
        top_k: int,
        candidate_pool: int,
        filters: SearchFilters,
        weights: ScoreWeights,
        rrf_k: int,
        fusion: str = "weighted",
        keyword_weight: float = 0.5,
        min_score: float | None = None,
        with_embedding: bool = False,
        exact: bool = False,
    ) -> list[ScoredRow]:
        """Candidates from HNSW and/or full text, fused and ranked by the final score in SQL.

        hnsw.ef_search and hnsw.iterative_scan are set on every connection by the engine.
        """
        sql, params = build_search_sql(
            mode, filters, with_embedding=with_embedding, min_score=min_score is not None,
            fusion=fusion, strict_keywords=uses_websearch_syntax(query_text), exact=exact,
        )
        params.update(
            tenant_id=tenant_id,
            candidate_pool=candidate_pool,
            top_k=top_k,
            rrf_k=rrf_k,
            keyword_weight=keyword_weight,
            half_life_hours=weights.half_life_hours,
            w_similarity=weights.similarity,
            w_importance=weights.importance,
            w_recency=weights.recency,
            w_total=weights.total,
        )
        if mode != "keyword":
            assert query_vector is not None
            params.update(query_vector=vector_literal(query_vector), model=model)
        if mode != "vector":
            params["query_text"] = query_text
        if min_score is not None:
            params["min_score"] = min_score
        result = await self.session.execute(text(sql), params)
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
                embedding_status=row.embedding_status,
                vector_rank=row.vector_rank,
                similarity=None if row.similarity is None else float(row.similarity),
                keyword_rank=row.keyword_rank,
                keyword_score=None if row.keyword_score is None else float(row.keyword_score),
                fused=float(row.fused),
                relevance=float(row.relevance),
                recency=float(row.recency),
                score=float(row.score),
                embedding=_parse_vector(row.embedding) if with_embedding else None,
            )
            for row in result
        ]

    async def tenant_size(self, tenant_id: str, cap: int) -> int:
        """The tenant's message count, counted no further than `cap` + 1 (cheap for big tenants)."""
        result = await self.session.execute(
            text(
                "SELECT count(*) FROM (SELECT 1 FROM messages WHERE tenant_id = :tenant_id "
                "LIMIT :cap) AS capped"
            ),
            {"tenant_id": tenant_id, "cap": cap + 1},
        )
        return int(result.scalar_one())

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
