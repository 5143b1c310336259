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
from memory_layer.audit import endpoints as audit_endpoints
from memory_layer.audit.deps import AuditTrail
from memory_layer.auth import endpoints as auth_endpoints
from memory_layer.auth.service import KeyRing
from memory_layer.channels import endpoints as channels_endpoints
from memory_layer.channels import service as channels_service
from memory_layer.config import Settings, check_startup_settings
from memory_layer.consolidation import endpoints as consolidation_endpoints
from memory_layer.consolidation.providers import build_language_provider
from memory_layer.consolidation.service import Distillers
from memory_layer.consolidation.worker import ConsolidationWorker
from memory_layer.context import endpoints as context_endpoints
from memory_layer.conversations import endpoints as conversations_endpoints
from memory_layer.embeddings import endpoints as embeddings_endpoints
from memory_layer.embeddings.providers import build_provider
from memory_layer.embeddings.worker import EmbeddingWorker, stop_worker
from memory_layer.erasure import endpoints as erasure_endpoints
from memory_layer.events import endpoints as events_endpoints
from memory_layer.health import endpoints as health_endpoints
from memory_layer.kit import tokens
from memory_layer.kit.cache import build_caches, session_info
from memory_layer.kit.crypto import SESSION_KEYRING
from memory_layer.kit.db.database import open_database_async
from memory_layer.kit.db.engine import (
    create_engine,
    create_read_sessionmaker,
    create_sessionmaker,
    search_settings_problems,
    to_libpq_url,
)
from memory_layer.kit.db.migrations import verify_schema
from memory_layer.kit.db.replicas import (
    CONSISTENCY_TOKEN_HEADER,
    READ_FROM_HEADER,
    ConsistencyTokenMiddleware,
    open_replicas,
)
from memory_layer.kit.db.wakeups import Wakeups, listening
from memory_layer.kit.http.errors import install_error_handlers
from memory_layer.kit.http.limits import BodySizeLimitMiddleware, PathLimit
from memory_layer.kit.http.openapi import install_openapi
from memory_layer.kit.http.strict_input import StrictInputMiddleware
from memory_layer.kit.observability.logging import (
    REQUEST_ID_HEADER,
    CorrelationIdMiddleware,
    configure_logging,
    valid_request_id,
)
from memory_layer.kit.observability.metrics import Metrics
from memory_layer.kit.observability.requests import RequestActivity, RequestObservationMiddleware
from memory_layer.kit.pagination import CursorCodec
from memory_layer.kit.redis import open_redis
from memory_layer.kit.schemas import error_responses
from memory_layer.kit.tenant_config import SESSION_TENANT_CONFIG, TenantConfigCache
from memory_layer.locks import endpoints as locks_endpoints
from memory_layer.mcp import http as mcp_http
from memory_layer.mcp.runtime import app_runtime
from memory_layer.mcp.server import build_server as build_mcp_server
from memory_layer.messages import endpoints as messages_endpoints
from memory_layer.policies import endpoints as policies_endpoints
from memory_layer.ratelimit.deps import TenantRateLimit
from memory_layer.ratelimit.middleware import RateLimitMiddleware
from memory_layer.ratelimit.service import RateLimiter
from memory_layer.retention import endpoints as retention_endpoints
from memory_layer.retention.scheduler import retention_loop
from memory_layer.runs import endpoints as runs_endpoints
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
            pool_size=settings.pool_size,
            max_overflow=settings.db_max_overflow,
            hnsw_ef_search=settings.hnsw_ef_search,
            pool_pre_ping=settings.db_pool_pre_ping,
            pool_timeout=settings.db_pool_timeout_seconds,
            transaction_pooler=settings.db_transaction_pooler,
        )
        stack.push_async_callback(engine.dispose)
        async with engine.connect() as connection:
            await verify_schema(connection, settings)
        app.state.redis = await stack.enter_async_context(open_redis(settings))
        app.state.rate_limiter = RateLimiter.build(settings, app.state.redis, app.state.metrics)
        shared_queries, app.state.search_cache = build_caches(
            settings, app.state.redis, app.state.metrics
        )
        if settings.db_transaction_pooler:
            for problem in await search_settings_problems(engine, settings.hnsw_ef_search):
                logger.warning(problem)
        activity: RequestActivity = app.state.activity
        embedder = await build_provider(
            settings, shared_queries, callers=lambda: activity.in_flight
        )
        stack.push_async_callback(embedder.close)
        app.state.engine = engine
        # Its sessions invalidate the tenant's cached searches after every committed write, and
        # hold the encryption key ring (kit/crypto.py) that encrypted channels' rows open with.
        encryption = settings.keyring()
        # Lock releases and appended events wake the waiting requests of every replica. Behind a
        # transaction pooler a LISTEN session would be handed to other clients and miss its
        # notifications: waiters re-check every half second instead (and tenant policies and
        # channels are read from the database on every request: kit/tenant_config.py).
        listen_dsn = (
            None
            if settings.db_transaction_pooler
            else to_libpq_url(engine.url.render_as_string(hide_password=False))
        )
        wakeups = Wakeups(listen_dsn)
        app.state.tenant_config = TenantConfigCache(wakeups)
        # Its sessions also tell that cache of the policies and channels they change.
        app.state.sessionmaker = create_sessionmaker(
            engine, {**session_info(app.state.search_cache), SESSION_KEYRING: encryption,
                     SESSION_TENANT_CONFIG: app.state.tenant_config}
        )
        app.state.read_sessionmaker = create_read_sessionmaker(
            engine, autocommit=not settings.db_transaction_pooler,
            info={SESSION_KEYRING: encryption},
        )
        async with app.state.read_sessionmaker() as session:
            # Encrypted channels and no key: refused here, with what to set.
            await channels_service.check_keys(session, encryption)
        app.state.embedder = embedder
        app.state.wakeups = await stack.enter_async_context(listening(wakeups))
        if settings.database_replica_urls:
            app.state.replicas = await stack.enter_async_context(
                open_replicas(settings, engine, app.state.read_sessionmaker, app.state.metrics)
            )
        language_provider = build_language_provider(settings)
        stack.push_async_callback(language_provider.close)
        app.state.language_provider = language_provider
        if settings.worker_enabled:
            worker = EmbeddingWorker(
                engine, app.state.sessionmaker, embedder, settings, app.state.metrics,
                activity=app.state.activity,
            )
            app.state.worker = worker
            worker_stop = asyncio.Event()
            worker_task = asyncio.create_task(worker.run(worker_stop), name="embedding-worker")
            # Finish the batch in hand on shutdown; a batch that takes longer is handed back.
            stack.push_async_callback(
                stop_worker, worker_task, worker_stop, settings.worker_shutdown_grace_seconds
            )
        if settings.worker_enabled and settings.consolidation_enabled:
            consolidation = ConsolidationWorker(
                app.state.sessionmaker,
                Distillers(language_provider, embedder, settings, app.state.metrics),
                activity=app.state.activity,
            )
            app.state.consolidation_worker = consolidation
            consolidation_stop = asyncio.Event()
            consolidation_task = asyncio.create_task(
                consolidation.run(consolidation_stop), name="consolidation-worker"
            )
            stack.push_async_callback(
                stop_worker, consolidation_task, consolidation_stop,
                settings.worker_shutdown_grace_seconds,
            )
        if settings.retention_schedule_seconds > 0:
            retention = asyncio.create_task(
                retention_loop(app.state.sessionmaker, settings), name="scheduled-retention"
            )
            stack.push_async_callback(_cancel, retention)
        # The context's tokenizer table (about a second to load): here, not in the first request.
        await asyncio.to_thread(tokens.encoding)
        # The MCP server (streamable HTTP at /mcp) over the same clients; its session manager's
        # task group lives inside this lifespan and ends before the clients close.
        app.state.mcp_sessions = await stack.enter_async_context(
            mcp_http.serving(build_mcp_server(app_runtime(app.state)), settings)
        )
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


# Headers a browser client may read: ours, and the rate limiter's.
EXPOSED_HEADERS = [
    REQUEST_ID_HEADER,
    "Idempotent-Replayed",
    "Location",
    "ETag",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    CONSISTENCY_TOKEN_HEADER,
    READ_FROM_HEADER,
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; clients are created in the lifespan, not here.

    Without settings (`uvicorn --factory memory_layer.app:create_app`) they are read from the
    environment and logging is configured as `memory-layer serve` does.
    """
    if settings is None:
        settings = Settings()
        configure_logging(settings.log_level, settings.log_format)
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
    # Every route but the probes and /metrics is rate limited: per client address (middleware
    # below) and, outside /v1/admin, per tenant the request acts for, whatever the key (this
    # dependency).
    for router in (
        messages_endpoints.router,
        search_endpoints.router,
        search_endpoints.messages_router,
        context_endpoints.router,
        # Before conversations: its `/{conversation_id:path}` would take `.../events`.
        events_endpoints.router,
        conversations_endpoints.router,
        locks_endpoints.router,
        stats_endpoints.router,
        stats_endpoints.admin_router,
        erasure_endpoints.router,
        retention_endpoints.router,
        # Before the policy routes: /v1/admin/tenants/{tenant}/channels/policy is a channel.
        channels_endpoints.router,
        channels_endpoints.schema_router,
        policies_endpoints.router,
        embeddings_endpoints.router,
        transfer_endpoints.router,
        auth_endpoints.router,
        audit_endpoints.router,
        consolidation_endpoints.router,
        runs_endpoints.router,
    ):
        app.include_router(
            router, dependencies=[TenantRateLimit, AuditTrail], responses=error_responses(429)
        )
    app.include_router(health_endpoints.router)
    # MCP over streamable HTTP: authenticated and rate limited like the routes (mcp/http.py).
    app.router.routes.append(mcp_http.route())
    app.include_router(health_endpoints.metrics_router)

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
    # Inside the metrics, the access log and CORS: a 429 is counted, logged and readable by a browser.
    app.add_middleware(RateLimitMiddleware, global_rate_limit=settings.global_rate_limit)
    # When this process last served a request: its worker fills context vectors once idle.
    app.state.activity = RequestActivity()
    app.add_middleware(RequestObservationMiddleware, metrics=metrics, activity=app.state.activity)
    if settings.database_replica_urls:
        # Writes answer a consistency token, reads name the server that ran them.
        app.add_middleware(ConsistencyTokenMiddleware)
    # Outside the access log, so its line (and every line logged while serving) has the id.
    app.add_middleware(
        CorrelationIdMiddleware, header_name=REQUEST_ID_HEADER, validator=valid_request_id
    )
    if settings.allowed_origins:
        # Outermost: every answer, a 413 or a 429 included, carries the CORS headers.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "X-API-Key", "Content-Type", "If-Match", "If-None-Match", REQUEST_ID_HEADER,
                # MCP clients in a browser: a bearer key and the protocol's own headers.
                "Authorization", "Mcp-Protocol-Version", "Mcp-Session-Id",
                CONSISTENCY_TOKEN_HEADER,
            ],
            expose_headers=EXPOSED_HEADERS,
        )
    return app
