"""A slow provider never holds a pooled connection: the model runs before the transaction opens."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.auth.service import create_api_key
from memory_layer.config import Settings
from memory_layer.embeddings.providers.fake import FakeEmbeddingProvider
from memory_layer.kit.db.engine import create_sessionmaker
from tests.fixtures.app import running_client


class GatedProvider(FakeEmbeddingProvider):
    """Every call waits until the test opens the gate; `waiting` counts calls inside the model."""

    def __init__(self) -> None:
        super().__init__(384)
        self.gate = asyncio.Event()
        self.waiting = 0

    async def _wait(self) -> None:
        self.waiting += 1
        await self.gate.wait()

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        await self._wait()
        return await super().embed_documents(texts)

    async def embed_query(self, text: str) -> list[float]:
        await self._wait()
        return await super().embed_query(text)


async def idle_in_transaction(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        result = await connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'idle in transaction'"
            )
        )
        return int(result.scalar_one())


async def test_slow_provider_does_not_hold_the_pool(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine, tenant: str
) -> None:
    async with create_sessionmaker(db_engine).begin() as session:
        _, key = await create_api_key(session, tenant, "pool-test")
    # One pooled connection, and a short wait for it: a request that kept the connection while the
    # model ran would make every other request fail with 503.
    settings = settings_factory(db_pool_size=1, db_max_overflow=0, db_pool_timeout_seconds=2)
    async with running_client(settings, headers={"X-API-Key": key}) as client:
        stored = await client.post(
            "/v1/messages", json={"conversation_id": "c", "role": "user", "content": "kept"},
        )
        assert stored.status_code == 200, stored.text
        provider = GatedProvider()
        client.app.state.embedder = provider

        write = asyncio.create_task(client.post("/v1/messages", json={
            "conversation_id": "c", "role": "user", "content": "slow write",
            "client_message_id": "slow-1",
        }))
        search = asyncio.create_task(client.get("/v1/memory/search", params={"query": "slow"}))
        async with asyncio.timeout(10):
            while provider.waiting < 2:
                await asyncio.sleep(0.01)

        # Both requests are inside the model now: no connection of theirs waits in a transaction,
        # and the single pooled connection is free for a third request.
        assert await idle_in_transaction(db_engine) == 0
        read = await client.get(stored.json()["status_url"].split("?")[0])
        assert read.status_code == 200, read.text

        provider.gate.set()
        written, found = await write, await search
        assert written.status_code == 200, written.text
        # The search ran alongside the write: it may or may not see it. Once the write has
        # answered, it is committed and found.
        assert found.status_code == 200, found.text
        again = await client.get("/v1/memory/search", params={"query": "slow write"})
        assert [item["content"] for item in again.json()["items"]][0] == "slow write"
