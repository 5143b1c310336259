"""The request's database session: the dependency owns the transaction."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from memory_layer.kit.cache import publish_writes
from memory_layer.kit.db.replicas import CONSISTENCY_TOKEN_HEADER, ReplicaPool, parse_lsn
from memory_layer.kit.tenant_config import publish_config_changes


def sessionmaker_of(request: Request) -> async_sessionmaker[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessionmaker


def read_sessionmaker_of(request: Request) -> async_sessionmaker[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.read_sessionmaker
    return sessionmaker


async def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    return sessionmaker_of(request)


SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]


@contextlib.asynccontextmanager
async def unit_of_work(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: committed when the block succeeds, else rolled back; after the commit,
    the tenants written get new search cache generations. The session takes a pooled connection
    at its first statement, not here: services embed texts before they touch the database, so no
    connection idles in a transaction during a model call."""
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        publish_config_changes(session)
        await publish_writes(session)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request (`unit_of_work`): committed when the handler succeeds, else
    rolled back.

    Used with scope="function", so the commit happens before the response is sent: a 2xx means
    the data is committed, and a failed commit becomes an error response, not a lost write.
    """
    async with unit_of_work(sessionmaker_of(request)) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def read_sessionmaker_for(
    request: Request, *, transaction: bool = False
) -> async_sessionmaker[AsyncSession]:
    """Sessions for a read-only route: on a read replica when MEMORY_DATABASE_REPLICA_URLS names
    any (kit/db/replicas.py: the request's `Memory-Consistency-Token` decides which may serve
    it), else on the primary without a transaction."""
    pool: ReplicaPool | None = getattr(request.app.state, "replicas", None)
    if pool is None:
        return sessionmaker_of(request) if transaction else read_sessionmaker_of(request)
    raw = request.headers.get(CONSISTENCY_TOKEN_HEADER)
    token = parse_lsn(raw) if raw else None
    if raw and token is None:
        # Not a WAL position: only the primary is sure to include what the client expects.
        route = pool.route_to_primary("invalid_token")
    else:
        route = await pool.route(token)
    return pool.sessionmaker_for(route, token, transaction=transaction)


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for routes that only read: no transaction (autocommit), so no BEGIN and COMMIT
    round trips; it writes nothing, so there is nothing to commit. On a read replica when any is
    configured: a route that only reads takes `ReadSessionDep`, one that writes (or must see the
    primary's latest state: keys, working memory, locks) takes `SessionDep`."""
    async with (await read_sessionmaker_for(request))() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]


async def get_read_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    return await read_sessionmaker_for(request, transaction=True)


# For reads that open their own sessions, in a transaction (a streamed export outlives the
# request's session and reads through a server-side cursor).
ReadSessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_read_sessionmaker)]
