"""What every command shares: settings with logging configured, JSON output, a database session."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.config import Settings
from memory_layer.kit.cache import SearchCache, build_caches, publish_writes, session_info
from memory_layer.kit.crypto import SESSION_KEYRING
from memory_layer.kit.db.engine import create_engine, create_sessionmaker
from memory_layer.kit.observability.logging import configure_logging
from memory_layer.kit.observability.metrics import Metrics
from memory_layer.kit.redis import open_redis


def load_settings(**updates: object) -> Settings:
    settings = Settings()
    if updates:
        settings = settings.model_copy(update=updates)
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def print_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, default=_jsonable))


@contextlib.asynccontextmanager
async def search_cache(settings: Settings | None) -> AsyncIterator[SearchCache | None]:
    """The serving processes' search cache (with MEMORY_REDIS_URL), for a command that writes
    messages to invalidate it after its commits like any API write."""
    if settings is None:
        yield None
        return
    async with open_redis(settings) as redis:
        yield build_caches(settings, redis, Metrics())[1]


@contextlib.asynccontextmanager
async def transaction(url: str, settings: Settings | None = None) -> AsyncIterator[AsyncSession]:
    """One committed transaction on a one-connection engine (a one-off command's unit of work);
    with `settings`, the tenants it wrote get new search cache generations after the commit."""
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with search_cache(settings) as cache:
            info = session_info(cache)
            if settings is not None:
                info[SESSION_KEYRING] = settings.keyring()
            async with create_sessionmaker(engine, info).begin() as session:
                yield session
            await publish_writes(session)
    finally:
        await engine.dispose()
