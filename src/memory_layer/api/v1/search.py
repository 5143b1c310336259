"""Search routes: GET for convenience, POST to keep query text out of access logs."""

from __future__ import annotations

from typing import Annotated

from cachetools import TTLCache
from fastapi import APIRouter, Query, Request

from memory_layer.api.deps import EmbedderDep, MetricsDep, PrincipalDep, SessionDep, SettingsDep
from memory_layer.repositories.messages import ScoredRow
from memory_layer.schemas.common import ErrorResponse
from memory_layer.schemas.search import (
    Explanation,
    ScoreParts,
    SearchItem,
    SearchRequest,
    SearchResponse,
)
from memory_layer.services import retrieval
from memory_layer.services.auth import Principal, resolve_tenant
from memory_layer.services.scoring import ScoreWeights, weighted_parts

router = APIRouter(prefix="/v1/memory", tags=["search"])

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 422, 503)
}


def _to_item(row: ScoredRow, weights: ScoreWeights, mmr_rank: int | None) -> SearchItem:
    parts = weighted_parts(row.relevance, row.importance, row.recency, weights)
    return SearchItem(
        message_id=row.id,
        conversation_id=row.conversation_id,
        user_id=row.user_id,
        role=row.role,
        content=row.content,
        metadata=row.metadata,
        created_at=row.created_at,
        embedding_status=row.embedding_status,
        score=row.score,
        similarity=row.similarity,
        importance=row.importance,
        recency=row.recency,
        score_parts=ScoreParts(
            relevance=parts.similarity, importance=parts.importance, recency=parts.recency
        ),
        explanation=Explanation(
            vector_rank=row.vector_rank,
            similarity=row.similarity,
            keyword_rank=row.keyword_rank,
            keyword_score=row.keyword_score,
            fused_score=row.fused,
            relevance=row.relevance,
            importance=row.importance,
            recency=row.recency,
            mmr_rank=mmr_rank,
        ),
    )


async def _search(
    request: SearchRequest,
    session: SessionDep,
    principal: Principal,
    settings: SettingsDep,
    embedder: EmbedderDep,
    metrics: MetricsDep,
    tenant_sizes: TTLCache[str, int],
) -> SearchResponse:
    tenant_id = resolve_tenant(principal, request.tenant_id)
    outcome = await retrieval.search_memory(
        session, tenant_id, request, settings=settings, embedder=embedder, metrics=metrics,
        tenant_sizes=tenant_sizes,
    )
    weights = retrieval.weights_from(settings)
    ranks = outcome.mmr_ranks or {}
    items = [_to_item(row, weights, ranks.get(id(row))) for row in outcome.rows]
    return SearchResponse(
        total=len(items),
        items=items,
        mode=outcome.mode,
        degraded=outcome.degraded,
        embedding_model=embedder.model_name,
    )


@router.get("/search", response_model=SearchResponse, responses=ERRORS)
async def search_get(
    request: Annotated[SearchRequest, Query()],
    http: Request,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    embedder: EmbedderDep,
    metrics: MetricsDep,
) -> SearchResponse:
    """What the tenant's memory holds that is relevant to `query`, best first."""
    return await _search(
        request, session, principal, settings, embedder, metrics, http.app.state.tenant_sizes
    )


@router.post("/search", response_model=SearchResponse, responses=ERRORS)
async def search_post(
    request: SearchRequest,
    http: Request,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    embedder: EmbedderDep,
    metrics: MetricsDep,
) -> SearchResponse:
    """The same search with a JSON body, so the query text stays out of access logs."""
    return await _search(
        request, session, principal, settings, embedder, metrics, http.app.state.tenant_sizes
    )
