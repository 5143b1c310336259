"""Re-embedding after a model or dimension change, through the worker's own path.

Rows whose vector came from another model are queued again (in chunks, each its own
transaction, so a large table is never locked at once) and then embedded by an
EmbeddingWorker exactly as new messages are: same batching, leases, retries and metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from memory_layer.config import Settings
from memory_layer.embeddings.providers.base import EmbeddingProvider
from memory_layer.embeddings.repository import EmbeddingJobRepository, queue_everything_again
from memory_layer.embeddings.worker import EmbeddingWorker
from memory_layer.kit.db.vectors import retype_embedding_column, stored_embedding_dimensions
from memory_layer.kit.errors import InvalidInput
from memory_layer.kit.observability.metrics import Metrics


@dataclass
class ReembedReport:
    dimension_changed_from: int | None
    queued: int
    embedded: int
    pending: int
    failed: int
    # Turns given a context vector by this run, and turns still without one (MEMORY_CONTEXT_VECTORS).
    context_filled: int = 0
    context_pending: int = 0


async def change_dimension_if_needed(
    engine: AsyncEngine, settings: Settings, *, allow: bool
) -> tuple[int | None, int]:
    """Retype the vector column to MEMORY_EMBEDDING_DIMENSIONS when it differs and `allow` is set."""
    async with engine.begin() as connection:
        stored = await stored_embedding_dimensions(connection)
        if stored is None or stored == settings.embedding_dimensions:
            return None, 0
        if not allow:
            raise InvalidInput(
                f"the database stores vector({stored}) but MEMORY_EMBEDDING_DIMENSIONS="
                f"{settings.embedding_dimensions}; pass --change-dimension to clear every stored "
                "vector, retype the column and embed every message again",
                code="dimension_mismatch",
            )
        # One transaction: the column retyped (every old vector cleared), every message queued.
        await retype_embedding_column(connection, settings.embedding_dimensions)
        return stored, await queue_everything_again(connection)


async def reembed(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    embedder: EmbeddingProvider,
    settings: Settings,
    *,
    tenant_id: str | None = None,
    include_failed: bool = False,
    change_dimension: bool = False,
    enqueue_only: bool = False,
    chunk_size: int = 1000,
    on_total: Callable[[int], None] = lambda _: None,
    on_progress: Callable[[int], None] = lambda _: None,
) -> ReembedReport:
    """Queue every message not embedded by `embedder`'s model, then (unless `enqueue_only`) embed."""
    changed_from, queued = await change_dimension_if_needed(
        engine, settings, allow=change_dimension
    )
    async with sessionmaker() as session:
        stale = await EmbeddingJobRepository(session).count_stale(
            embedder.model_name, tenant_id, include_failed
        )
    on_total(queued + stale)
    while True:
        async with sessionmaker.begin() as session:
            marked = await EmbeddingJobRepository(session).mark_for_reembed(
                embedder.model_name, tenant_id, chunk_size, include_failed
            )
        queued += marked
        if marked < chunk_size:
            break
    embedded = 0
    context_filled = 0
    if not enqueue_only:
        worker = EmbeddingWorker(engine, sessionmaker, embedder, settings, Metrics())
        while True:
            outcome = await worker.run_once()
            embedded += outcome.ready
            on_progress(outcome.ready)
            if outcome.claimed == 0:
                break
        if worker.context_enabled:
            # Turns stored before context vectors (or before this model) get theirs; each
            # batch is committed, so an interrupted run resumes where it stopped.
            while claimed := await worker.fill_context_once():
                context_filled += claimed
    async with sessionmaker() as session:
        repository = EmbeddingJobRepository(session)
        counts = await repository.status_counts(tenant_id)
        context_pending = await repository.count_context_pending(tenant_id)
    return ReembedReport(
        dimension_changed_from=changed_from,
        queued=queued,
        embedded=embedded,
        pending=counts["pending"],
        failed=counts["failed"],
        context_filled=context_filled,
        context_pending=context_pending,
    )
