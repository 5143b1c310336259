"""Calling the embedding provider from a request: timed, counted, failures mapped or deferred."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TypeVar

from memory_layer.embeddings.base import EmbeddingError, EmbeddingProvider
from memory_layer.errors import ServiceUnavailable
from memory_layer.observability.metrics import Metrics

T = TypeVar("T")


async def measured(call: Awaitable[T], embedder: EmbeddingProvider, metrics: Metrics) -> T:
    """Await one provider call; a provider failure becomes 503 `embedding_failed`."""
    started = time.perf_counter()
    try:
        result = await call
    except EmbeddingError as exc:
        metrics.embedding_errors.labels(provider=embedder.model_name, kind=exc.kind).inc()
        raise ServiceUnavailable(
            f"the embedding provider failed, nothing was stored or searched: {exc}",
            code="embedding_failed",
        ) from exc
    metrics.embedding_seconds.observe(time.perf_counter() - started)
    return result


async def embed_or_defer(
    text: str, embedder: EmbeddingProvider, metrics: Metrics
) -> tuple[list[float] | None, EmbeddingError | None]:
    """Embed one document inline; on a provider failure return the error instead of raising.

    Ingestion then stores the message as pending and the worker retries it with back-off: a
    provider outage delays a vector, it never loses a message.
    """
    started = time.perf_counter()
    try:
        vectors = await embedder.embed_documents([text])
    except EmbeddingError as exc:
        metrics.embedding_errors.labels(provider=embedder.model_name, kind=exc.kind).inc()
        return None, exc
    metrics.embedding_seconds.observe(time.perf_counter() - started)
    return vectors[0], None
