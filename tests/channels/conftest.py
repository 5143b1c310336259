"""A database of the channels tests' own, for what must not meet other tests' rows: the
embedding worker (it claims every due row) and start-up with or without keys."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.kit.db.engine import create_engine
from memory_layer.kit.db.migrations import upgrade_to_head
from tests.fixtures.database import DatabaseServer

CHANNELS_DATABASE = "memory_layer_channels_test"


@pytest.fixture(scope="session")
def own_database_url(db_server: DatabaseServer) -> str:
    url = db_server.create_database(CHANNELS_DATABASE)
    upgrade_to_head(url, 384)
    return url


@pytest.fixture
async def own_engine(own_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(own_database_url, pool_size=4, max_overflow=2)
    async with engine.begin() as connection:
        await connection.execute(text("TRUNCATE messages, channels, channel_usage"))
    yield engine
    await engine.dispose()
