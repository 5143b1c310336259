"""The stats route: counts of what a tenant stores."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from memory_layer.auth.deps import READ, ReadCallerDep
from memory_layer.kit.schemas import error_responses
from memory_layer.stats import service
from memory_layer.stats.schemas import StatsRequest, StatsResponse

router = APIRouter(prefix="/v1/stats", tags=["stats"])


@router.get(
    "",
    response_model=StatsResponse,
    responses=error_responses(401, 403, 422, 503),
    dependencies=[READ],
)
async def get_stats(query: Annotated[StatsRequest, Query()], caller: ReadCallerDep) -> StatsResponse:
    """Messages by role, kind and embedding status, conversations, users, bytes, time span."""
    tenant_id = caller.tenant(query.tenant_id)
    scope = query.model_dump(exclude={"tenant_id"})
    stats = await service.get_stats(caller.session, tenant_id, **scope)
    return StatsResponse.model_validate(stats)
