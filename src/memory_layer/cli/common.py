"""What every command shares: settings with logging configured, JSON output, a database session."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.config import Settings
from memory_layer.kit.db.engine import create_engine, create_sessionmaker
from memory_layer.kit.observability.logging import configure_logging


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
async def transaction(url: str) -> AsyncIterator[AsyncSession]:
    """One committed transaction on a one-connection engine (a one-off command's unit of work)."""
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with create_sessionmaker(engine).begin() as session:
            yield session
    finally:
        await engine.dispose()
