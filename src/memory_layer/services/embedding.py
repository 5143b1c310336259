"""Calling the embedding provider from a request: timed, counted, failures mapped to a 503."""

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
        metrics.embedding_errors.labels(provider=embedder.model_name).inc()
        raise ServiceUnavailable(
            f"the embedding provider failed, nothing was stored or searched: {exc}",
            code="embedding_failed",
        ) from exc
    metrics.embedding_seconds.observe(time.perf_counter() - started)
    return result
