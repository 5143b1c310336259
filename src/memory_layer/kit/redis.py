"""The Redis client (cache and rate limits), built in the lifespan when MEMORY_REDIS_URL is set."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from memory_layer.config import Settings


@contextlib.asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[Redis | None]:
    """A client for MEMORY_REDIS_URL, closed at the end; None when no URL is set."""
    if settings.redis_url is None:
        yield None
        return
    client = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        yield client
    finally:
        await client.aclose()
