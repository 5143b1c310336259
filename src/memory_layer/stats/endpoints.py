"""The stats route: counts of what a tenant stores."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from memory_layer.auth.deps import PrincipalDep
from memory_layer.auth.service import resolve_tenant
from memory_layer.kit.db.session import SessionDep
from memory_layer.kit.schemas import error_responses
from memory_layer.stats import service
from memory_layer.stats.schemas import StatsRequest, StatsResponse

router = APIRouter(prefix="/v1/stats", tags=["stats"])


@router.get(
    "",
    response_model=StatsResponse,
    responses=error_responses(401, 403, 422, 503),
)
async def get_stats(
    query: Annotated[StatsRequest, Query()], session: SessionDep, principal: PrincipalDep
) -> StatsResponse:
    """Messages by role, kind and embedding status, conversations, users, bytes, time span."""
    tenant_id = resolve_tenant(principal, query.tenant_id)
    stats = await service.get_stats(
        session, tenant_id, user_id=query.user_id, conversation_id=query.conversation_id
    )
    return StatsResponse.model_validate(stats)
