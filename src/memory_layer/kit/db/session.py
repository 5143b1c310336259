"""The request's database session: the dependency owns the transaction."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from memory_layer.kit.cache import publish_writes


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


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for routes that only read: no transaction (autocommit), so no BEGIN and COMMIT
    round trips; it writes nothing, so there is nothing to commit."""
    async with read_sessionmaker_of(request)() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
