"""The stats routes: counts of what a tenant stores; the whole store at a glance (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from memory_layer.auth.deps import READ, AdminDep, ReadCallerDep
from memory_layer.kit.db.session import ReadSessionDep
from memory_layer.kit.http.deps import SettingsDep
from memory_layer.kit.schemas import error_responses
from memory_layer.stats import service
from memory_layer.stats.schemas import StatsRequest, StatsResponse, StoreStatsResponse

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


admin_router = APIRouter(prefix="/v1/admin/stats", tags=["admin"])


@admin_router.get("", response_model=StoreStatsResponse, responses=error_responses(401, 403, 503))
async def get_store_stats(
    request: Request, session: ReadSessionDep, settings: SettingsDep, _: AdminDep
) -> StoreStatsResponse:
    """Totals across tenants (messages by status, conversations, tenants, bytes, runs and every
    other domain's), this process's database pool, Redis memory when configured."""
    stats = await service.store_stats(
        session,
        pool=service.pool_stats(
            request.app.state.engine.pool, settings.pool_size + settings.db_max_overflow
        ),
        redis=getattr(request.app.state, "redis", None),
    )
    return StoreStatsResponse.model_validate(stats)
