"""Admin routes: liveness, readiness, retention."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from memory_layer.api.deps import AdminDep, SessionDep, SettingsDep
from memory_layer.schemas.admin import (
    CheckResult,
    EmbeddingQueueResponse,
    HealthResponse,
    ReadinessResponse,
    RequeueRequest,
    RequeueResponse,
    RetentionRequest,
    RetentionResponse,
)
from memory_layer.schemas.common import ErrorResponse, Identifier
from memory_layer.services import embedding_queue, retention
from memory_layer.services import health as checks

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def health(request: Request) -> JSONResponse:
    """Liveness: the process answers and its database answers a ping."""
    database = await checks.database_check(request.app.state.engine)
    body = HealthResponse(status="ok" if database.ok else "degraded", database=database)
    return JSONResponse(status_code=200 if database.ok else 503, content=body.model_dump())


@router.get(
    "/readiness", response_model=ReadinessResponse, responses={503: {"model": ReadinessResponse}}
)
async def readiness(request: Request, settings: SettingsDep) -> JSONResponse:
    """Readiness: database reachable, migrations at head, embedder answering (when enabled)."""
    results: dict[str, CheckResult] = {
        "database": await checks.database_check(request.app.state.engine),
        "migrations": await checks.migrations_check(request.app.state.engine),
    }
    if request.app.state.redis is not None:
        results["redis"] = await checks.redis_check(request.app.state.redis)
    if settings.health_embed_check_enabled:
        results["embedder"] = await checks.embedder_check(
            request.app.state.embedder,
            settings.embedding_dimensions,
            settings.readiness_embed_timeout_seconds,
        )
    ready = all(result.ok for result in results.values())
    body = ReadinessResponse(status="ready" if ready else "not_ready", checks=results)
    return JSONResponse(status_code=200 if ready else 503, content=body.model_dump())


@router.post(
    "/retention/run",
    response_model=RetentionResponse,
    responses={code: {"model": ErrorResponse} for code in (401, 403, 409, 422)},
)
async def run_retention(
    body: RetentionRequest, session: SessionDep, settings: SettingsDep, _: AdminDep
) -> RetentionResponse:
    """Archive or delete old, unimportant messages (`dry_run` only counts them)."""
    return await retention.run_retention(session, body, settings=settings)


ADMIN_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 422)
}


@router.get("/embeddings", response_model=EmbeddingQueueResponse, responses=ADMIN_ERRORS)
async def embedding_queue_status(
    session: SessionDep,
    _: AdminDep,
    tenant_id: Annotated[Identifier | None, Query()] = None,
) -> EmbeddingQueueResponse:
    """Messages waiting for the embedding worker and messages it gave up on."""
    return await embedding_queue.queue_status(session, tenant_id)


@router.post("/embeddings/requeue", response_model=RequeueResponse, responses=ADMIN_ERRORS)
async def requeue_failed_embeddings(
    body: RequeueRequest, session: SessionDep, _: AdminDep
) -> RequeueResponse:
    """Queue failed messages again with a fresh attempt budget (all, a tenant's, or listed ids)."""
    return await embedding_queue.requeue_failed(session, body)
