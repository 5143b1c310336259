"""Helpers of the embedding-queue tests: pending rows, their states, and a counting provider."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from memory_layer.config import Settings
from memory_layer.embeddings.providers.base import EmbeddingError
from memory_layer.embeddings.providers.fake import FakeEmbeddingProvider
from memory_layer.embeddings.worker import EmbeddingWorker
from memory_layer.kit.observability.metrics import Metrics
from tests.fixtures.app import make_settings


def worker_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "worker_batch_size": 16,
        "worker_batch_wait_ms": 0,
        "embedding_retry_base_seconds": 0.05,
        "embedding_retry_max_seconds": 0.2,
    }
    values.update(overrides)
    return make_settings(url, **values)


class CountingProvider(FakeEmbeddingProvider):
    """The fake provider, counting every text it embeds and failing on the ones it is told to."""

    def __init__(
        self, *, delay: float = 0.0, poison: str | None = None, kind: str = "invalid_input"
    ) -> None:
        super().__init__(384)
        self.calls: Counter[str] = Counter()
        self.delay = delay
        self.poison = poison
        self.kind = kind
        # Set once a batch is in the model call: tests act on a worker at that moment.
        self.entered = asyncio.Event()

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.entered.set()
        if self.delay:
            await asyncio.sleep(self.delay)  # a slow model call
        if self.poison is not None and any(self.poison in t for t in texts):
            raise EmbeddingError(f"cannot embed {self.poison}", kind=self.kind,
                                 retryable=self.kind in ("rate_limited", "unavailable"))
        self.calls.update(texts)
        return await super().embed_documents(texts)


async def insert_pending(engine: AsyncEngine, texts: list[str], tenant: str = "t-worker") -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO messages (tenant_id, id, conversation_id, role, content, importance) "
                "VALUES (:t, :id, 'c', 'user', :content, 0.5)"
            ),
            [{"t": tenant, "id": uuid.uuid4(), "content": content} for content in texts],
        )


async def statuses(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with engine.connect() as connection:
        result = await connection.execute(
            text(
                "SELECT content, embedding_status, embedding_attempts, embedding_error, "
                "embedding_model, embedding_lease_owner, embedding IS NOT NULL AS has_vector "
                "FROM messages"
            )
        )
        return {row.content: row._asdict() for row in result}


async def all_due(engine: AsyncEngine) -> bool:
    """Whether every pending row is due by the database's clock (any lease on it has run out)."""
    async with engine.connect() as connection:
        not_due = await connection.execute(
            text(
                "SELECT count(*) FROM messages "
                "WHERE embedding_status = 'pending' AND embedding_next_attempt_at > now()"
            )
        )
        return int(not_due.scalar_one()) == 0


def make_worker(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    provider: FakeEmbeddingProvider,
    settings: Settings,
) -> EmbeddingWorker:
    return EmbeddingWorker(engine, sessionmaker, provider, settings, Metrics())
