"""The FastAPI application: create_app() and the lifespan that builds every client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from cachetools import TTLCache
from fastapi import FastAPI, Response
from fastapi.middleware.cors import CORSMiddleware
from redis.asyncio import Redis

from memory_layer import __version__
from memory_layer.api.errors import install_error_handlers
from memory_layer.api.limits import BodySizeLimitMiddleware
from memory_layer.api.v1 import admin, messages, search
from memory_layer.config import Settings, check_startup_settings
from memory_layer.db.embedded import EmbeddedPostgres, start_embedded
from memory_layer.db.engine import create_engine, create_sessionmaker
from memory_layer.db.migrations import upgrade_to_head, verify_schema
from memory_layer.embeddings.factory import build_provider
from memory_layer.observability.metrics import Metrics, MetricsMiddleware
from memory_layer.services.auth import KeyRing
from memory_layer.worker.embeddings import EmbeddingWorker, refresh_queue_depth, stop_worker
from memory_layer.worker.retention import retention_loop

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    for warning in check_startup_settings(settings):
        logger.warning(warning)

    embedded: EmbeddedPostgres | None = None
    if settings.database_url is None:
        embedded = await asyncio.to_thread(start_embedded, settings.data_dir)
        await asyncio.to_thread(embedded.ensure_database)
        database_url = embedded.url()
    else:
        database_url = settings.database_url.get_secret_value()

    engine = None
    embedder = None
    redis_client: Redis | None = None
    background: list[asyncio.Task[None]] = []
    worker_task: asyncio.Task[None] | None = None
    worker_stop = asyncio.Event()
    try:
        auto_migrate = settings.auto_migrate if settings.auto_migrate is not None else embedded
        if auto_migrate:
            await asyncio.to_thread(upgrade_to_head, database_url, settings.embedding_dimensions)
        engine = create_engine(
            database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            hnsw_ef_search=settings.hnsw_ef_search,
            pool_pre_ping=settings.db_pool_pre_ping,
        )
        async with engine.connect() as connection:
            await verify_schema(connection, settings)
        embedder = await build_provider(settings)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.embedder = embedder
        if settings.redis_url is not None:
            redis_client = Redis.from_url(settings.redis_url.get_secret_value())
        app.state.redis = redis_client
        if settings.worker_enabled:
            worker = EmbeddingWorker(
                engine, app.state.sessionmaker, embedder, settings, app.state.metrics
            )
            app.state.worker = worker
            worker_task = asyncio.create_task(worker.run(worker_stop), name="embedding-worker")
        if settings.retention_schedule_seconds > 0:
            background.append(
                asyncio.create_task(retention_loop(app.state.sessionmaker, settings))
            )
        logger.info(
            "memory-layer ready: %s embeddings (%d dims), %s database",
            embedder.model_name,
            embedder.dimensions,
            "embedded" if embedded else "external",
        )
        yield
    finally:
        if worker_task is not None:
            # Finish the batch in hand; a batch that takes longer is handed back to the queue.
            await stop_worker(worker_task, worker_stop, settings.worker_shutdown_grace_seconds)
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if redis_client is not None:
            await redis_client.aclose()
        if embedder is not None:
            await embedder.close()
        if engine is not None:
            await engine.dispose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; clients are created in the lifespan, not here."""
    settings = settings or Settings()
    app = FastAPI(
        title="memory-layer",
        version=__version__,
        summary="Semantic conversation memory for chatbots and AI agents.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.key_ring = KeyRing.from_settings(settings)
    metrics = Metrics()
    app.state.metrics = metrics
    # Tenant sizes decide exact versus HNSW search; a minute-old count is good enough for that.
    app.state.tenant_sizes = TTLCache(maxsize=100_000, ttl=60)

    install_error_handlers(app)
    app.include_router(messages.router)
    app.include_router(search.router)
    app.include_router(admin.router)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        # Queue depth is read at scrape time, so it is right whichever process runs the worker.
        try:
            await asyncio.wait_for(refresh_queue_depth(app.state.sessionmaker, metrics), 2.0)
        except Exception:
            logger.warning("could not read the embedding queue depth for /metrics", exc_info=True)
        return Response(content=metrics.render(), media_type="text/plain; version=0.0.4")

    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type"],
            expose_headers=["Idempotent-Replayed"],
        )
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
