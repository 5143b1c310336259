"""The Redis client (cache and rate limits), built in the lifespan when MEMORY_REDIS_URL is set."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from memory_layer.config import Settings


@contextlib.asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[Redis | None]:
    """A client for MEMORY_REDIS_URL, closed at the end; None when no URL is set.

    Every call is bounded by MEMORY_REDIS_TIMEOUT_SECONDS: a Redis that hangs counts as down
    (rate limits fail open, caches miss) instead of holding requests.
    """
    if settings.redis_url is None:
        yield None
        return
    client = Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
    )
    try:
        yield client
    finally:
        await client.aclose()
