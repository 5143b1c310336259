"""Calling the embedding provider from a request: timed, failures counted by kind."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TypeVar

from memory_layer.embeddings.base import EmbeddingError, EmbeddingProvider
from memory_layer.observability.metrics import Metrics

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
    try:
        vectors = await call_provider(embedder.embed_documents([text]), embedder, metrics)
    except EmbeddingError as exc:
        return None, exc
    return vectors[0], None
