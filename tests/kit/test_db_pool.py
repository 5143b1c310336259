"""The default connection pool keeps the connections it opens: bursts of requests above its size
wait for one of them instead of opening (and closing) PostgreSQL backends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from tests.fixtures.app import SERVICE_KEY, running_client


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


async def test_bursts_above_the_pool_size_open_no_new_connections(
    settings_factory: Callable[..., Settings], tenant: str
) -> None:
    settings = settings_factory(
        db_pool_size=_default("db_pool_size"), db_max_overflow=_default("db_max_overflow"),
        async_embeddings=True,
    )
    async with running_client(settings, headers={"X-API-Key": SERVICE_KEY}) as client:
        engine: AsyncEngine = client.app.state.engine
        opened: list[object] = []
        held = peak = 0

        def checkout(*_: object) -> None:
            nonlocal held, peak
            held += 1
            peak = max(peak, held)

        def checkin(*_: object) -> None:
            nonlocal held
            held -= 1

        event.listen(engine.sync_engine, "connect", lambda connection, record: opened.append(record))
        event.listen(engine.sync_engine.pool, "checkout", checkout)
        event.listen(engine.sync_engine.pool, "checkin", checkin)
        burst = 2 * settings.db_pool_size
        for wave in range(3):
            answers = await asyncio.gather(*(
                client.post("/v1/messages", json={
                    "tenant_id": tenant, "conversation_id": f"c{wave}", "role": "user",
                    "content": f"wave {wave}, message {i}",
                })
                for i in range(burst)
            ))
            assert {answer.status_code for answer in answers} == {202}
        # The bursts used every connection the pool has at once; all of them are kept, and no
        # more were ever opened.
        assert peak == settings.db_pool_size
        assert 0 < len(opened) <= settings.db_pool_size
        assert engine.sync_engine.pool.checkedin() == settings.db_pool_size  # type: ignore[attr-defined]
