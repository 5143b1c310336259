"""Probes: liveness and readiness. They need no key, so orchestrators can call them."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from memory_layer.embeddings.deps import EmbedderDep
from memory_layer.embeddings.service import refresh_queue_depth
from memory_layer.health import service
from memory_layer.health.schemas import CheckResult, HealthResponse, ReadinessResponse
from memory_layer.kit.db.replicas import ReplicaPool
from memory_layer.kit.http.deps import MetricsDep, SettingsDep

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def health(request: Request) -> JSONResponse:
    """Liveness: the process answers and its database answers a ping."""
    database = await service.database_check(request.app.state.engine)
    body = HealthResponse(
        status="ok" if database.ok else "degraded",
        database=CheckResult.model_validate(database),
    )
    return JSONResponse(status_code=200 if database.ok else 503, content=body.model_dump())


@router.get(
    "/readiness", response_model=ReadinessResponse, responses={503: {"model": ReadinessResponse}}
)
async def readiness(
    request: Request, settings: SettingsDep, embedder: EmbedderDep
) -> JSONResponse:
    """Readiness: database reachable, migrations at head, embedder answering (when enabled)."""
    results = await _readiness_checks(request)
    if settings.health_embed_check_enabled:
        results["embedder"] = await service.embedder_check(
            embedder, settings.embedding_dimensions, settings.readiness_embed_timeout_seconds
        )
    ready = all(result.ok for result in results.values())
    body = ReadinessResponse(
        status="ready" if ready else "not_ready",
        checks={name: CheckResult.model_validate(result) for name, result in results.items()},
    )
    return JSONResponse(status_code=200 if ready else 503, content=body.model_dump())


async def _readiness_checks(request: Request) -> dict[str, service.CheckResult]:
    results: dict[str, service.CheckResult] = {
        "database": await service.database_check(request.app.state.engine),
        "migrations": await service.migrations_check(request.app.state.engine),
    }
    if request.app.state.redis is not None:
        results["redis"] = await service.redis_check(request.app.state.redis)
    replicas: ReplicaPool | None = getattr(request.app.state, "replicas", None)
    if replicas is not None:
        # Never "not ready" for a replica: without one, reads go to the primary.
        results["replicas"] = service.CheckResult(ok=True, detail=replicas.details())
    return results


metrics_router = APIRouter()


@metrics_router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request, metrics: MetricsDep, settings: SettingsDep) -> Response:
    """Prometheus text format; no key, so scrapers need no secret."""
    metrics.observe_pool(
        request.app.state.engine.pool, settings.pool_size + settings.db_max_overflow
    )
    # Readiness as a series, for the "not ready" alert (the embedder probe is left to the route).
    try:
        checks = await asyncio.wait_for(_readiness_checks(request), 2.0)
        for name, result in checks.items():
            metrics.readiness.labels(check=name).set(1 if result.ok else 0)
    except TimeoutError:
        metrics.readiness.labels(check="database").set(0)
    # Queue depth is read at scrape time, so it is right whichever process runs the worker.
    try:
        await asyncio.wait_for(refresh_queue_depth(request.app.state.sessionmaker, metrics), 2.0)
    except Exception:
        logger.warning("could not read the embedding queue depth for /metrics", exc_info=True)
    return Response(content=metrics.render(), media_type="text/plain; version=0.0.4")
