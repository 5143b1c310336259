"""`memory-layer worker`: the embedding worker (and the consolidation loop beside it, unless
MEMORY_CONSOLIDATION_ENABLED=false) as its own process (production deployments).

SIGTERM or SIGINT stops it gracefully: the batch in hand is finished (or, after
MEMORY_WORKER_SHUTDOWN_GRACE_SECONDS, handed back to the queue) before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from memory_layer.channels.service import check_keys
from memory_layer.config import Settings
from memory_layer.consolidation.providers import build_language_provider
from memory_layer.consolidation.service import Distillers
from memory_layer.consolidation.worker import ConsolidationWorker
from memory_layer.embeddings.providers import build_provider
from memory_layer.embeddings.worker import EmbeddingWorker, stop_worker
from memory_layer.kit.cache import build_caches, session_info
from memory_layer.kit.crypto import SESSION_KEYRING
from memory_layer.kit.db.engine import create_engine, create_sessionmaker
from memory_layer.kit.db.migrations import verify_schema
from memory_layer.kit.observability.metrics import Metrics
from memory_layer.kit.redis import open_redis

logger = logging.getLogger(__name__)


async def run_worker(
    database_url: str, settings: Settings, *, metrics_port: int | None = None, drain: bool = False
) -> int:
    """Run one worker until signalled (or, with `drain`, until nothing is due)."""
    # At most 4 connections, kept once opened (overflow ones would be closed on every hand-back).
    engine = create_engine(
        database_url, pool_size=4, max_overflow=0,
        transaction_pooler=settings.db_transaction_pooler,
    )
    embedder = None
    stack = contextlib.AsyncExitStack()
    try:
        async with engine.connect() as connection:
            await verify_schema(connection, settings)
        embedder = await build_provider(settings)
        metrics = Metrics()
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr=settings.host, registry=metrics.registry)
        # With Redis, the worker invalidates the cached searches of the tenants it embeds for.
        redis = await stack.enter_async_context(open_redis(settings))
        # And opens encrypted channels' texts to embed them (kit/crypto.py).
        sessionmaker = create_sessionmaker(
            engine,
            {
                **session_info(build_caches(settings, redis, metrics)[1]),
                SESSION_KEYRING: settings.keyring(),
            },
        )
        async with sessionmaker() as session:
            # Encrypted rows and no key: refused here, as `serve` refuses it.
            await check_keys(session, settings.keyring())
        worker = EmbeddingWorker(engine, sessionmaker, embedder, settings, metrics)
        consolidation: ConsolidationWorker | None = None
        if settings.consolidation_enabled:
            language = build_language_provider(settings)
            stack.push_async_callback(language.close)
            consolidation = ConsolidationWorker(
                sessionmaker, Distillers(language, embedder, settings, metrics)
            )
        if drain:
            ready = await worker.drain()
            logger.info("embedding worker drained the queue: %d messages embedded", ready)
            if consolidation is not None:
                done = await consolidation.drain()
                logger.info("consolidation drained the queue: %d turns consolidated", done)
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        logger.info(
            "embedding worker %s started: %s, batches of %d", worker.owner,
            embedder.model_name, settings.worker_batch_size,
        )
        task = asyncio.create_task(worker.run(stop), name="embedding-worker")
        consolidating = (
            asyncio.create_task(consolidation.run(stop), name="consolidation-worker")
            if consolidation is not None else None
        )
        await stop.wait()
        logger.info("embedding worker stopping: finishing the batch in hand")
        await stop_worker(task, stop, settings.worker_shutdown_grace_seconds)
        if consolidating is not None:
            await stop_worker(consolidating, stop, settings.worker_shutdown_grace_seconds)
        return 0
    finally:
        await stack.aclose()
        if embedder is not None:
            await embedder.close()
        await engine.dispose()
