"""Calling the embedding provider from a request, and the queue as operators see it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from memory_layer.audit import service as audit
from memory_layer.embeddings.providers.base import EmbeddingError, EmbeddingProvider
from memory_layer.embeddings.repository import EmbeddingJobRepository
from memory_layer.kit.cache import note_write
from memory_layer.kit.errors import InvalidInput
from memory_layer.kit.observability.metrics import Metrics

T = TypeVar("T")


async def call_provider(call: Awaitable[T], embedder: EmbeddingProvider, metrics: Metrics) -> T:
    """Await one provider call, timed; a failure is counted by kind and raised again."""
    started = time.perf_counter()
    try:
        result = await call
    except EmbeddingError as exc:
        metrics.embedding_errors.labels(provider=embedder.model_name, kind=exc.kind).inc()
        raise
    metrics.embedding_seconds.observe(time.perf_counter() - started)
    return result


async def embed_or_defer(
    text: str, embedder: EmbeddingProvider, metrics: Metrics
) -> tuple[list[float] | None, EmbeddingError | None]:
    """Embed one document inline; on a provider failure return the error instead of raising.

    Ingestion then stores the message as pending and the worker retries it with back-off: a
    provider outage delays a vector, it never loses a message.
    """
    vectors, failure = await embed_all_or_defer([text], embedder, metrics)
    return (vectors[0] if vectors is not None else None), failure


async def embed_all_or_defer(
    texts: list[str], embedder: EmbeddingProvider, metrics: Metrics
) -> tuple[list[list[float]] | None, EmbeddingError | None]:
    """Embed many documents in one provider call (a batch write); on a failure, or an answer
    that does not hold one vector per text, return the error: the worker embeds them later."""
    try:
        vectors = await call_provider(embedder.embed_documents(texts), embedder, metrics)
    except EmbeddingError as exc:
        return None, exc
    if len(vectors) != len(texts):
        return None, EmbeddingError(
            f"the provider returned {len(vectors)} vectors for {len(texts)} texts",
            kind="bad_response",
        )
    return vectors, None


@dataclass(frozen=True)
class QueueDepth:
    tenant_id: str | None
    pending: int
    failed: int
    # Turns with their own vector but no context vector yet (MEMORY_CONTEXT_VECTORS); None when
    # not counted.
    context_pending: int | None = None


async def queue_status(
    session: AsyncSession, tenant_id: str | None, *, with_context: bool = False
) -> QueueDepth:
    """Pending and failed message counts, for one tenant or all (and, `with_context`, the turns
    waiting for a context vector)."""
    repository = EmbeddingJobRepository(session)
    counts = await repository.status_counts(tenant_id)
    context = await repository.count_context_pending(tenant_id) if with_context else None
    return QueueDepth(
        tenant_id=tenant_id,
        pending=counts["pending"],
        failed=counts["failed"],
        context_pending=context,
    )


async def requeue_failed(
    session: AsyncSession,
    tenant_id: str | None,
    message_ids: list[uuid.UUID] | None,
    *,
    actor: audit.Actor,
) -> int:
    """Give failed messages a fresh attempt budget; the NOTIFY trigger wakes the workers.
    Audited (`embeddings.requeued`)."""
    if message_ids is not None and tenant_id is None:
        raise InvalidInput("message_ids need a tenant_id", code="tenant_required")
    requeued = await EmbeddingJobRepository(session).requeue_failed(tenant_id, message_ids)
    await audit.record(
        session,
        audit.AuditAction.embeddings_requeued,
        actor=actor,
        tenant_id=tenant_id,
        counts={"messages": requeued},
    )
    if requeued:
        note_write(session, tenant_id)  # search results show each message's embedding status
    return requeued


async def refresh_queue_depth(
    sessionmaker: async_sessionmaker[AsyncSession], metrics: Metrics
) -> QueueDepth:
    """Read the queue depth into the pending/failed gauges (at scrape time, or by the worker)."""
    async with sessionmaker() as session:
        depth = await queue_status(session, None)
        oldest = await EmbeddingJobRepository(session).oldest_due_age_seconds()
    metrics.queue_depth.labels(status="pending").set(depth.pending)
    metrics.queue_depth.labels(status="failed").set(depth.failed)
    metrics.queue_oldest_age.set(oldest)
    return depth
