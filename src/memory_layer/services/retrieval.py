"""Retrieval: embed the query, find nearest neighbours in SQL, rank by the final score."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.config import Settings
from memory_layer.embeddings.base import EmbeddingProvider
from memory_layer.observability.metrics import Metrics
from memory_layer.repositories.messages import MessageRepository, ScoredRow, SearchFilters
from memory_layer.schemas.search import SearchRequest
from memory_layer.services.embedding import measured
from memory_layer.services.scoring import ScoreWeights


def weights_from(settings: Settings) -> ScoreWeights:
    return ScoreWeights(
        similarity=settings.score_weight_similarity,
        importance=settings.score_weight_importance,
        recency=settings.score_weight_recency,
        half_life_hours=settings.recency_half_life_hours,
    )


async def search_memory(
    session: AsyncSession,
    tenant_id: str,
    request: SearchRequest,
    *,
    settings: Settings,
    embedder: EmbeddingProvider,
    metrics: Metrics,
) -> list[ScoredRow]:
    """The tenant's most relevant messages for the query, best first."""
    vector = await measured(embedder.embed_query(request.query), embedder, metrics)
    filters = SearchFilters(
        conversation_id=request.conversation_id,
        role=request.role.value if request.role is not None else None,
        importance_min=request.importance_min,
        since=request.since,
        until=request.until,
    )
    return await MessageRepository(session).search(
        tenant_id,
        vector,
        top_k=request.top_k,
        candidate_pool=max(request.top_k * settings.search_candidate_multiplier, 20),
        filters=filters,
        weights=weights_from(settings),
    )
