"""Health checks behind /v1/admin/health and /v1/admin/readiness."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.embeddings.providers.base import EmbeddingProvider
from memory_layer.health import repository
from memory_layer.kit.db.migrations import current_revision, head_revision


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: Any = None


async def database_check(engine: AsyncEngine) -> CheckResult:
    """Ping the database."""
    try:
        async with engine.connect() as connection:
            await repository.ping(connection)
    except Exception as exc:
        return CheckResult(ok=False, detail=f"{type(exc).__name__}: {exc}")
    return CheckResult(ok=True)


async def migrations_check(engine: AsyncEngine) -> CheckResult:
    """Is the schema at the newest migration this build knows?"""
    try:
        async with engine.connect() as connection:
            current = await current_revision(connection)
    except Exception as exc:
        return CheckResult(ok=False, detail=f"{type(exc).__name__}: {exc}")
    head = head_revision()
    return CheckResult(ok=current == head, detail={"current": current, "head": head})


async def embedder_check(
    embedder: EmbeddingProvider, dimensions: int, timeout_seconds: float
) -> CheckResult:
    """Embed a probe text within the timeout and check the vector's length."""
    try:
        async with asyncio.timeout(timeout_seconds):
            vector = await embedder.embed_query("readiness probe")
    except TimeoutError:
        return CheckResult(ok=False, detail=f"no answer within {timeout_seconds}s")
    except Exception as exc:
        return CheckResult(ok=False, detail=f"{type(exc).__name__}: {exc}")
    return CheckResult(
        ok=len(vector) == dimensions,
        detail={"model": embedder.model_name, "dimensions": len(vector)},
    )


async def redis_check(client: Redis, timeout_seconds: float = 2.0) -> CheckResult:
    """PING the configured Redis."""
    try:
        async with asyncio.timeout(timeout_seconds):
            await client.ping()
    except Exception as exc:
        return CheckResult(ok=False, detail=f"{type(exc).__name__}: {exc}")
    return CheckResult(ok=True)
