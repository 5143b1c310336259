"""Fixtures of the embedding-queue tests: a database of their own, emptied before each test.

A worker claims every due row it can see, so it must not meet the pending rows other tests leave
behind (and they must not meet it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from memory_layer.kit.db.engine import create_engine, create_sessionmaker
from memory_layer.kit.db.migrations import upgrade_to_head
from tests.fixtures.database import DatabaseServer

WORKER_DATABASE = "memory_layer_worker_test"


@pytest.fixture(scope="session")
def worker_database_url(db_server: DatabaseServer) -> str:
    url = db_server.create_database(WORKER_DATABASE)
    upgrade_to_head(url, 384)
    return url


@pytest.fixture
async def engine(worker_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(worker_database_url, pool_size=8, max_overflow=4)
    async with engine.begin() as connection:
        await connection.execute(text("TRUNCATE messages"))
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)
