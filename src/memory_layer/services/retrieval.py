"""Retrieval: embed the query once, gather vector and keyword candidates in SQL, rank, diversify."""

from __future__ import annotations

from dataclasses import dataclass

from cachetools import TTLCache
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.config import Settings
from memory_layer.embeddings.base import EmbeddingError, EmbeddingProvider
from memory_layer.errors import ServiceUnavailable
from memory_layer.observability.metrics import Metrics
from memory_layer.repositories.messages import MessageRepository, ScoredRow, SearchFilters
from memory_layer.schemas.search import SearchMode, SearchRequest
from memory_layer.services.diversity import mmr_order
from memory_layer.services.embedding import call_provider
from memory_layer.services.scoring import ScoreWeights


def weights_from(settings: Settings) -> ScoreWeights:
    return ScoreWeights(
        similarity=settings.score_weight_similarity,
        importance=settings.score_weight_importance,
        recency=settings.score_weight_recency,
        half_life_hours=settings.recency_half_life_hours,
    )


@dataclass(frozen=True)
class SearchOutcome:
    rows: list[ScoredRow]
    mode: SearchMode
    degraded: str | None
    mmr_ranks: dict[int, int] | None = None


async def _query_vector(
    request: SearchRequest, embedder: EmbeddingProvider, metrics: Metrics
) -> tuple[list[float] | None, SearchMode, str | None]:
    if request.mode is SearchMode.keyword:
        return None, SearchMode.keyword, None
    try:
        vector = await call_provider(embedder.embed_query(request.query), embedder, metrics)
    except EmbeddingError as exc:
        if request.mode is SearchMode.hybrid:
            # The provider is down or rate-limited: answer from the keyword index rather than not
            # at all, and say so.
            return None, SearchMode.keyword, f"embedding_failed: {exc}"
        raise ServiceUnavailable(
            f"the embedding provider failed, nothing was searched: {exc}", code="embedding_failed"
        ) from exc
    return vector, request.mode, None


async def search_memory(
    session: AsyncSession,
    tenant_id: str,
    request: SearchRequest,
    *,
    settings: Settings,
    embedder: EmbeddingProvider,
    metrics: Metrics,
    tenant_sizes: TTLCache[str, int] | None = None,
) -> SearchOutcome:
    """The tenant's most relevant messages for the query, best first."""
    vector, mode, degraded = await _query_vector(request, embedder, metrics)
    repository = MessageRepository(session)
    exact = False
    if mode is not SearchMode.keyword and settings.search_exact_max_rows > 0:
        size = tenant_sizes.get(tenant_id) if tenant_sizes is not None else None
        if size is None:
            size = await repository.tenant_size(tenant_id, settings.search_exact_max_rows)
            if tenant_sizes is not None:
                tenant_sizes[tenant_id] = size
        exact = size <= settings.search_exact_max_rows
    filters = SearchFilters(
        conversation_id=request.conversation_id,
        user_id=request.user_id,
        role=request.role.value if request.role is not None else None,
        importance_min=request.importance_min,
        since=request.since,
        until=request.until,
        metadata=request.metadata,
        include_archived=request.include_archived,
    )
    candidate_pool = max(request.top_k * settings.search_candidate_multiplier, 20)
    diversify = request.diversity > 0
    rows = await repository.search(
        tenant_id,
        request.query,
        vector,
        mode=mode.value,
        model=embedder.model_name,
        # Diversity re-ranks a longer list, so it needs more than top_k to choose from.
        top_k=candidate_pool if diversify else request.top_k,
        candidate_pool=candidate_pool,
        filters=filters,
        weights=weights_from(settings),
        rrf_k=settings.search_rrf_k,
        fusion=settings.search_fusion.value,
        keyword_weight=settings.search_keyword_weight,
        min_score=request.min_score,
        with_embedding=diversify,
        exact=exact,
    )
    if not diversify:
        return SearchOutcome(rows=rows, mode=mode, degraded=degraded)
    order = mmr_order(
        [row.score for row in rows],
        [row.embedding for row in rows],
        lambda_=1.0 - request.diversity,
        k=request.top_k,
    )
    chosen = [rows[i] for i in order]
    return SearchOutcome(
        rows=chosen,
        mode=mode,
        degraded=degraded,
        mmr_ranks={id(row): position + 1 for position, row in enumerate(chosen)},
    )
