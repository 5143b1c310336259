"""Engine and session factories (built in the lifespan, never at import time)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def to_async_url(url: str) -> str:
    """Normalise any PostgreSQL URL to the asyncpg driver SQLAlchemy needs."""
    parsed = make_url(url)
    if parsed.drivername in {"postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg"}:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def to_libpq_url(url: str) -> str:
    """The same URL without the SQLAlchemy driver suffix (for asyncpg.connect and psql)."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    hnsw_ef_search: int = 100,
    pool_pre_ping: bool = False,
    pool_timeout: float = 30.0,
    application_name: str = "memory-layer",
) -> AsyncEngine:
    """An asyncpg engine whose connections carry the vector-search settings from the start.

    Iterative index scans keep walking the HNSW graph until enough rows pass the tenant filter,
    so a small tenant among many is not starved (pgvector >= 0.8). Setting them once per
    connection saves two round trips per search over `SET LOCAL`.
    """
    return create_async_engine(
        to_async_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pool_pre_ping,
        pool_timeout=pool_timeout,
        connect_args={
            "server_settings": {
                # Names the service's connections in pg_stat_activity.
                "application_name": application_name,
                "hnsw.ef_search": str(hnsw_ef_search),
                "hnsw.iterative_scan": "relaxed_order",
            }
        },
    )


def create_sessionmaker(
    engine: AsyncEngine, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions for writes; `info` is copied into every session's `info` (kit/cache.py puts the
    search cache there, for the sessions to invalidate after their commits)."""
    return async_sessionmaker(engine, expire_on_commit=False, info=info)


def create_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for reads that need no transaction: AUTOCOMMIT on the same pool, so asyncpg sends
    no BEGIN/COMMIT and each statement sees the latest committed data."""
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
    )
