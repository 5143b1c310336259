"""Engine and session factories (built in the lifespan, never at import time)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session


class PrimarySession(Session):
    """The session class of the write sessionmaker: kit/db/replicas.py listens to its commits to
    answer the request a consistency token."""


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
    hnsw_ef_search: int = 200,
    pool_pre_ping: bool = False,
    pool_timeout: float = 30.0,
    application_name: str = "memory-layer",
    transaction_pooler: bool = False,
) -> AsyncEngine:
    """An asyncpg engine whose connections carry the vector-search settings from the start.

    Iterative index scans keep walking the HNSW graph until enough rows pass the tenant filter,
    so a small tenant among many is not starved (pgvector >= 0.8). Setting them once per
    connection saves two round trips per search over `SET LOCAL`.

    `transaction_pooler`: the URL is a PgBouncer (or similar) in transaction mode, where
    consecutive transactions of one client connection run on different server connections. A
    prepared statement then cannot be cached (it may not exist on the next server connection)
    nor carry asyncpg's sequential names (two clients would collide on one server connection),
    and startup parameters do not reach the server: the HNSW settings must be set on the
    database instead (`ALTER DATABASE ... SET`, docs/scaling.md; `search_settings_problems`
    checks them).
    """
    server_settings = {
        # Names the service's connections in pg_stat_activity.
        "application_name": application_name,
    }
    connect_args: dict[str, Any] = {"server_settings": server_settings}
    async_url = make_url(to_async_url(url))
    if transaction_pooler:
        async_url = async_url.update_query_dict({"prepared_statement_cache_size": "0"})
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = _unique_statement_name
    else:
        server_settings["hnsw.ef_search"] = str(hnsw_ef_search)
        server_settings["hnsw.iterative_scan"] = "relaxed_order"
    return create_async_engine(
        async_url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pool_pre_ping,
        pool_timeout=pool_timeout,
        connect_args=connect_args,
    )


def _unique_statement_name() -> str:
    return f"__memory_layer_{uuid.uuid4().hex}__"


async def search_settings_problems(engine: AsyncEngine, hnsw_ef_search: int) -> list[str]:
    """What differs from the HNSW settings search needs, as the server reports them (behind a
    transaction pooler they come from `ALTER DATABASE/ROLE ... SET`, not from the client)."""
    wanted = {"hnsw.ef_search": str(hnsw_ef_search), "hnsw.iterative_scan": "relaxed_order"}
    problems = []
    async with engine.connect() as connection:
        for name, value in wanted.items():
            result = await connection.execute(
                text("SELECT current_setting(:name, true)"), {"name": name}
            )
            actual = result.scalar_one()
            if actual != value:
                problems.append(
                    f"{name} is {actual!r} on the server, search expects {value!r}: run "
                    f"ALTER DATABASE <name> SET {name} = '{value}' (MEMORY_DB_TRANSACTION_POOLER)"
                )
    return problems


def create_sessionmaker(
    engine: AsyncEngine, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions for writes; `info` is copied into every session's `info` (kit/cache.py puts the
    search cache there, for the sessions to invalidate after their commits). Their commits mark
    the request for a consistency token (kit/db/replicas.py)."""
    return async_sessionmaker(
        engine, expire_on_commit=False, info=info, sync_session_class=PrimarySession
    )


def create_read_sessionmaker(
    engine: AsyncEngine, *, autocommit: bool = True, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions for reads that need no transaction: AUTOCOMMIT on the same pool, so asyncpg sends
    no BEGIN/COMMIT and each statement sees the latest committed data.

    Behind a transaction pooler (`autocommit=False`) they are ordinary sessions: asyncpg prepares
    a statement and executes it in two exchanges, which the pooler may send to two different
    server connections unless a transaction holds them together.
    """
    if not autocommit:
        return create_sessionmaker(engine, info)
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False, info=info
    )
