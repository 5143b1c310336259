"""Faults on real processes: `memory-layer serve` under write load while PostgreSQL restarts, Redis
stops and starts, the service itself is SIGKILLed, or the embedding provider is slow. Every write
the service acknowledged with a 2xx must be in the database afterwards, whole."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.kit.db.embedded import start_embedded
from memory_layer.kit.db.engine import create_engine
from memory_layer.kit.db.migrations import upgrade_to_head
from tests.contract.served import bound_key, serve_env, serving, start
from tests.fixtures.messages import count_rows
from tests.fixtures.redis import RedisServer
from tests.fixtures.tenants import new_tenant
from tests.reliability.load import WriteLoad, check_stored, content_of
from tests.support.waiting import wait_until


@pytest.fixture
async def private_engine_for() -> AsyncIterator[list[AsyncEngine]]:
    engines: list[AsyncEngine] = []
    yield engines
    for engine in engines:
        await engine.dispose()


async def _grows(load: WriteLoad, by: int) -> None:
    """Wait until `by` more writes are acknowledged than now."""
    target = len(load.acknowledged) + by
    await wait_until(lambda: len(load.acknowledged) >= target, timeout=60,
                     message=f"{by} more acknowledged writes (statuses so far {dict(load.statuses)})")


async def test_postgres_restart_under_write_load(
    tmp_path_factory: pytest.TempPathFactory, private_engine_for: list[AsyncEngine]
) -> None:
    # A PostgreSQL of its own (the suite's server stays up for the other tests).
    data_dir = Path(tmp_path_factory.mktemp("pgr"))
    postgres = start_embedded(data_dir)
    try:
        postgres.ensure_database("faults")
        url = postgres.url("faults")
        await asyncio.to_thread(upgrade_to_head, url, 384)
        tenant = new_tenant()
        key = bound_key(url, tenant)
        with serving(serve_env(url, MEMORY_DB_POOL_TIMEOUT_SECONDS="2")) as served:
            load = WriteLoad(served.url, key, tenant)
            tasks = load.start()
            await _grows(load, 20)
            await asyncio.to_thread(postgres.stop)
            await wait_until(lambda: load.statuses[503] >= 5, timeout=30,
                             message=f"503 while down ({load.statuses})")
            async with httpx.AsyncClient(base_url=served.url) as client:
                down = await client.get("/v1/admin/readiness")
            assert down.status_code == 503, down.text
            acknowledged_while_down = len(load.acknowledged)
            # The same server again, on the same socket (the handle is cached per data directory).
            await asyncio.to_thread(postgres.server.ensure_postgres_running)
            # Recovers by itself: nothing restarts the service.
            await _grows(load, 20)
            await load.finish(tasks)
        engine = create_engine(url, pool_size=1, max_overflow=0)
        private_engine_for.append(engine)
        stored = await check_stored(engine, tenant, load.acknowledged)
    finally:
        postgres.stop()
    # Only 2xx and 503: no 500, and the service never dropped a connection.
    assert set(load.statuses) <= {200, 202, 503}, load.statuses
    assert len(load.acknowledged) > acknowledged_while_down
    print(f"\npostgres restart: {dict(load.statuses)}, {len(load.acknowledged)} acknowledged, "
          f"{stored} stored")


async def _redis_ok(client: httpx.AsyncClient) -> bool | None:
    body = (await client.get("/v1/admin/readiness")).json()
    check = body["checks"].get("redis")
    return None if check is None else bool(check["ok"])


async def test_redis_stopped_and_started_under_load(
    database_url: str, db_engine: AsyncEngine, private_redis: RedisServer
) -> None:
    tenant = new_tenant()
    key = bound_key(database_url, tenant)
    env = serve_env(database_url, MEMORY_REDIS_URL=private_redis.url)
    with serving(env) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
            assert await _redis_ok(client) is True
            load = WriteLoad(served.url, key, tenant)
            tasks = load.start()
            await _grows(load, 10)
            await asyncio.to_thread(private_redis.stop)
            assert await _redis_ok(client) is False
            # Answers continue without Redis.
            await _grows(load, 20)
            search = await client.get(
                "/v1/memory/search", params={"query": "remembered", "mode": "keyword"},
                headers={"X-API-Key": key},
            )
            assert search.status_code == 200, search.text
            await asyncio.to_thread(private_redis.start)

            async def redis_back() -> bool:
                return await _redis_ok(client) is True

            await wait_until(redis_back, timeout=30, message="readiness sees Redis again")
            await _grows(load, 10)
            await load.finish(tasks)
    assert set(load.statuses) <= {200, 202}, load.statuses
    stored = await check_stored(db_engine, tenant, load.acknowledged)
    print(f"\nredis stop/start: {dict(load.statuses)}, {len(load.acknowledged)} acknowledged, "
          f"{stored} stored")


async def test_sigkill_under_write_load_loses_no_acknowledged_write(
    database_url: str, db_engine: AsyncEngine
) -> None:
    tenant = new_tenant()
    key = bound_key(database_url, tenant)
    env = serve_env(database_url)
    served = start(env)
    load = WriteLoad(served.url, key, tenant)
    tasks = load.start()
    try:
        await _grows(load, 30)
        served.process.kill()  # SIGKILL: no shutdown, no rollback from the service's side
        served.process.wait(timeout=10)
        await wait_until(lambda: load.statuses["ConnectError"] >= 1, timeout=10)
    finally:
        await load.finish(tasks)
        if served.process.poll() is None:
            served.process.kill()
    stored = await check_stored(db_engine, tenant, load.acknowledged)
    assert set(load.statuses) - {200, 202} <= {"ConnectError", "RemoteProtocolError", "ReadError"}
    # A new process serves the same data, and a retry of any write replays it.
    with serving(env) as again:
        async with httpx.AsyncClient(base_url=again.url, headers={"X-API-Key": key}) as client:
            last = load.acknowledged[-1]
            if last.startswith("m"):
                retry = await client.post("/v1/messages", json={
                    "tenant_id": tenant, "conversation_id": "any", "role": "user",
                    "content": content_of(last), "client_message_id": last,
                })
                assert retry.status_code in (200, 409), retry.text
    served.log.unlink(missing_ok=True)
    print(f"\nsigkill: {dict(load.statuses)}, {len(load.acknowledged)} acknowledged, {stored} stored")


async def test_a_slow_embedding_provider_does_not_exhaust_the_pool(
    database_url: str, db_engine: AsyncEngine
) -> None:
    # Two pooled connections, a second's wait for one, and 300 ms per model call: if a request
    # held its connection while the model ran, 24 concurrent writes would need 3.6 s of
    # connection time on 2 connections and most would time out with a 503.
    tenant = new_tenant()
    key = bound_key(database_url, tenant)
    env = serve_env(
        database_url, MEMORY_FAKE_EMBEDDING_DELAY_MS="300", MEMORY_DB_POOL_SIZE="2",
        MEMORY_DB_MAX_OVERFLOW="0", MEMORY_DB_POOL_TIMEOUT_SECONDS="1",
    )
    with serving(env) as served:
        async with httpx.AsyncClient(
            base_url=served.url, headers={"X-API-Key": key}, timeout=30
        ) as client:
            writes = [
                client.post("/v1/messages", json={
                    "tenant_id": tenant, "conversation_id": "slow", "role": "user",
                    "content": f"slow provider {n}", "client_message_id": f"s{n}",
                })
                for n in range(24)
            ]
            searches = [
                client.get("/v1/memory/search", params={"query": f"slow {n}"}) for n in range(8)
            ]
            answers = await asyncio.gather(*writes, *searches)
    statuses = [answer.status_code for answer in answers]
    assert statuses == [200] * len(answers), [a.text for a in answers if a.status_code != 200][:3]
    assert await count_rows(db_engine, tenant) == 24
