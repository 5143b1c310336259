"""The FastAPI application: create_app() and the lifespan that builds every client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from cachetools import TTLCache
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from memory_layer import __version__
from memory_layer.auth.service import KeyRing
from memory_layer.config import Settings, check_startup_settings
from memory_layer.conversations import endpoints as conversations_endpoints
from memory_layer.embeddings import endpoints as embeddings_endpoints
from memory_layer.embeddings.providers import build_provider
from memory_layer.embeddings.worker import EmbeddingWorker, stop_worker
from memory_layer.erasure import endpoints as erasure_endpoints
from memory_layer.health import endpoints as health_endpoints
from memory_layer.kit.db.database import open_database_async
from memory_layer.kit.db.engine import create_engine, create_read_sessionmaker, create_sessionmaker
from memory_layer.kit.db.migrations import verify_schema
from memory_layer.kit.http.errors import install_error_handlers
from memory_layer.kit.http.limits import BodySizeLimitMiddleware, PathLimit
from memory_layer.kit.http.openapi import install_openapi
from memory_layer.kit.http.strict_input import StrictInputMiddleware
from memory_layer.kit.observability.metrics import Metrics, MetricsMiddleware
from memory_layer.kit.pagination import CursorCodec
from memory_layer.kit.redis import open_redis
from memory_layer.messages import endpoints as messages_endpoints
from memory_layer.retention import endpoints as retention_endpoints
from memory_layer.retention.scheduler import retention_loop
from memory_layer.search import endpoints as search_endpoints
from memory_layer.stats import endpoints as stats_endpoints
from memory_layer.transfer import endpoints as transfer_endpoints

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build every client in order; the exit stack closes them in reverse, whatever fails."""
    settings: Settings = app.state.settings
    for warning in check_startup_settings(settings):
        logger.warning(warning)
    async with contextlib.AsyncExitStack() as stack:
        database = await stack.enter_async_context(open_database_async(settings))
        engine = create_engine(
            database.url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            hnsw_ef_search=settings.hnsw_ef_search,
            pool_pre_ping=settings.db_pool_pre_ping,
            pool_timeout=settings.db_pool_timeout_seconds,
        )
        stack.push_async_callback(engine.dispose)
        async with engine.connect() as connection:
            await verify_schema(connection, settings)
        embedder = await build_provider(settings)
        stack.push_async_callback(embedder.close)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.read_sessionmaker = create_read_sessionmaker(engine)
        app.state.embedder = embedder
        app.state.redis = await stack.enter_async_context(open_redis(settings))
        if settings.worker_enabled:
            worker = EmbeddingWorker(
                engine, app.state.sessionmaker, embedder, settings, app.state.metrics
            )
            app.state.worker = worker
            worker_stop = asyncio.Event()
            worker_task = asyncio.create_task(worker.run(worker_stop), name="embedding-worker")
            # Finish the batch in hand on shutdown; a batch that takes longer is handed back.
            stack.push_async_callback(
                stop_worker, worker_task, worker_stop, settings.worker_shutdown_grace_seconds
            )
        if settings.retention_schedule_seconds > 0:
            retention = asyncio.create_task(
                retention_loop(app.state.sessionmaker, settings), name="scheduled-retention"
            )
            stack.push_async_callback(_cancel, retention)
        logger.info(
            "memory-layer ready: %s embeddings (%d dims), %s database",
            embedder.model_name,
            embedder.dimensions,
            database.kind,
        )
        yield


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _operation_id(route: APIRoute) -> str:
    return route.name


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; clients are created in the lifespan, not here."""
    settings = settings or Settings()
    app = FastAPI(
        title="memory-layer",
        version=__version__,
        summary="Semantic conversation memory for chatbots and AI agents.",
        lifespan=lifespan,
        # operationId = the handler's name (`create_message`, `search_memory`), so generated
        # clients read well.
        generate_unique_id_function=_operation_id,
    )
    app.state.settings = settings
    app.state.key_ring = KeyRing.from_settings(settings)
    metrics = Metrics()
    app.state.metrics = metrics
    # Tenant sizes decide exact versus HNSW search; a minute-old count is good enough for that.
    app.state.tenant_sizes = TTLCache(maxsize=100_000, ttl=60)
    app.state.cursor_codec = CursorCodec(settings.cursor_secret)

    install_error_handlers(app)
    install_openapi(app)
    app.include_router(messages_endpoints.router)
    app.include_router(search_endpoints.router)
    app.include_router(conversations_endpoints.router)
    app.include_router(stats_endpoints.router)
    app.include_router(erasure_endpoints.router)
    app.include_router(health_endpoints.router)
    app.include_router(retention_endpoints.router)
    app.include_router(embeddings_endpoints.router)
    app.include_router(transfer_endpoints.router)
    app.include_router(health_endpoints.metrics_router)

    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["X-API-Key", "Content-Type"],
            expose_headers=["Idempotent-Replayed", "Location"],
        )
    # Inside the body limit (which bounds what it buffers): repeated keys (in JSON bodies and query
    # strings), non-finite numbers and deep nesting are a 422 before any route reads the request.
    app.add_middleware(StrictInputMiddleware, streamed_paths=frozenset({"/v1/import"}))
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        overrides={
            # A full batch of the longest valid messages, derived from the same per-message limits.
            messages_endpoints.BATCH_PATH: settings.max_batch_body_bytes,
            # An import is a whole tenant: counted as it streams in, never buffered.
            "/v1/import": PathLimit(
                settings.max_import_bytes, streamed=True, reason="MEMORY_MAX_IMPORT_BYTES"
            ),
        },
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
