"""What one search is (the mode, the filters, every knob, decided once by the service) and what it
finds (scored rows)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from memory_layer.config import ContextVectors, KeywordScoring, SearchFusion
from memory_layer.search.cues import Period

if TYPE_CHECKING:
    from memory_layer.search.scoring import ScoreWeights


class SearchMode(StrEnum):
    hybrid = "hybrid"
    vector = "vector"
    keyword = "keyword"


@dataclass(frozen=True)
class SearchFilters:
    conversation_id: str | None = None
    user_id: str | None = None
    role: str | None = None
    kind: str | None = None
    # Any of these kinds (the context asks for facts and preferences apart from the rest).
    kinds: tuple[str, ...] | None = None
    pii_kind: str | None = None
    # channels/: only messages of this channel.
    channel: str | None = None
    importance_min: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    metadata: dict[str, Any] | None = None
    include_archived: bool = False
    # Facts a newer one replaced (consolidation/) are left out unless asked for.
    include_superseded: bool = False


# Queries that use websearch operators (quotes, OR, -word) keep their strict meaning.
_WEBSEARCH_OPERATORS = re.compile(r'"|\bor\b|(?:^|\s)-\w', re.IGNORECASE)


@dataclass(frozen=True)
class SearchPlan:
    """Everything the repository needs for one search statement."""

    tenant_id: str
    query_text: str
    query_vector: list[float] | None
    mode: SearchMode
    fusion: SearchFusion
    model: str
    limit: int
    candidate_pool: int
    filters: SearchFilters
    weights: ScoreWeights
    rrf_k: int
    keyword_weight: float
    min_score: float | None = None
    with_embedding: bool = False
    exact: bool = False
    # `messages`, or the partition that holds the tenant's rows (TenantExtent.table): PostgreSQL
    # plans a statement on one plain table in about half the time it takes for the partitioned
    # one, and a search's statement is planned on every execution.
    table: str = "messages"
    # Query cues (search/cues.py): a bonus to the relevance of messages written in the period the
    # query names, and of messages whose user_id is one of the query's words.
    period: Period | None = None
    # A day named without its year ("on May 4th"): (month, day), matched in any year.
    day: tuple[int, int] | None = None
    time_boost: float = 0.0
    words: tuple[str, ...] = ()
    speaker_boost: float = 0.0
    keyword_scoring: KeywordScoring = KeywordScoring.cover_density
    # BM25's statistics from a sample of the scope's newest rows (a tenant larger than the
    # sample) rather than counted exactly (search/repository.py).
    sampled_statistics: bool = False
    # Whether the query is also compared with each turn's context vector, and how the two
    # similarities combine (MEMORY_CONTEXT_VECTORS).
    context_vectors: ContextVectors = ContextVectors.off

    def __post_init__(self) -> None:
        if (self.query_vector is None) != (self.mode is SearchMode.keyword):
            raise ValueError("a query vector is needed exactly when the mode uses vectors")

    @property
    def strict_keywords(self) -> bool:
        return bool(_WEBSEARCH_OPERATORS.search(self.query_text))


@dataclass(frozen=True)
class ScoredRow:
    """A search hit: the message's public fields and every signal that ranked it."""

    id: uuid.UUID
    conversation_id: str
    user_id: str | None
    role: str
    kind: str
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
    part_relevance: float
    part_importance: float
    part_recency: float
    score: float
    embedding: list[float] | None = None
    mmr_rank: int | None = None
    # When the message expires (its TTL): a cached result holding it must not outlive it.
    expires_at: datetime | None = None
    # An encrypted channel's row (channels/): the repository opens it, the cache never keeps it.
    encryption_key_id: str | None = None
    ciphertext: bytes | None = None
    # Usage feedback (POST /v1/messages/{id}/usage) and the factor it puts on the score.
    use_count: int = 0
    success_count: int = 0
    failure_count: int = 0
    last_used_at: datetime | None = None
    feedback: float = 1.0
    # What the session boost added to the relevance (search/context.py); 0 without it.
    session_boost: float = 0.0
