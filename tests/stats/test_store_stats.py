"""GET /v1/admin/stats: the whole store at a glance (admin only), and its pluggable counters."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from memory_layer.config import Settings
from memory_layer.kit.db.engine import create_sessionmaker
from memory_layer.stats import service
from tests.fixtures.app import ADMIN_KEY, SERVICE_KEY, AppClient, running_client
from tests.fixtures.messages import remember
from tests.fixtures.tenants import new_tenant, tenant_key


async def totals(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/v1/admin/stats")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_totals_count_what_every_tenant_stores(
    client: AppClient, db_engine: AsyncEngine
) -> None:
    before = (await totals(client))["totals"]
    first, second = new_tenant(), new_tenant()
    await remember(client, first, "one", conversation_id="a")
    await remember(client, first, "two", conversation_id="b")
    await remember(client, second, "three", conversation_id="a")
    run = await client.post("/v1/runs", json={"tenant_id": first, "flow_name": "f"})
    assert run.status_code == 201
    await client.post("/v1/runs", json={"tenant_id": second, "flow_name": "f", "status": "failed"})
    event = await client.post(
        "/v1/conversations/a/events", json={"tenant_id": first, "type": "step", "data": {"n": 1}}
    )
    assert event.status_code == 201, event.text
    lock = await client.post(
        "/v1/locks/stats-probe", params={"tenant_id": second}, json={"ttl_seconds": 600}
    )
    assert lock.status_code == 201, lock.text

    body = await totals(client)
    after = body["totals"]
    grew = {key: after[key] - before.get(key, 0) for key in after}
    assert grew["messages"] == 3
    assert grew["messages_ready"] == 3
    assert grew["messages_pending"] == 0
    assert grew["conversations"] == 3  # (tenant, conversation) pairs
    assert grew["tenants"] == 2
    assert grew["content_bytes"] == len("onetwothree")
    assert grew["runs"] == 2
    assert grew["runs_active"] == 1
    assert grew["events"] == 1
    assert grew["locks_held"] == 1
    assert body["database_bytes"] > 0
    pool = body["pool"]
    assert pool["max_connections"] == pool["size"] + 4  # db_pool_size 4, db_max_overflow 4
    assert pool["in_use"] + pool["idle"] >= 1  # the connections earlier requests opened
    assert body["redis"] is None  # no MEMORY_REDIS_URL
    assert body["redis_error"] is None

    key = await tenant_key(db_engine, first)
    refused = await client.get("/v1/admin/stats", headers={"X-API-Key": key})
    assert refused.status_code == 403
    service_key = await client.get("/v1/admin/stats", headers={"X-API-Key": SERVICE_KEY})
    assert service_key.status_code == 403


async def test_redis_memory_when_configured(settings_factory: Callable[..., Settings]) -> None:
    redis_url = os.environ.get("MEMORY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    async with running_client(
        settings_factory(redis_url=redis_url), headers={"X-API-Key": ADMIN_KEY}
    ) as client:
        body = await totals(client)
    assert body["redis"]["used_memory_bytes"] > 0
    assert body["redis"]["used_memory_peak_bytes"] >= body["redis"]["used_memory_bytes"] // 2
    assert body["redis_error"] is None

    async with running_client(
        settings_factory(redis_url="redis://127.0.0.1:1/0"), headers={"X-API-Key": ADMIN_KEY}
    ) as client:
        down = await totals(client)
    assert down["redis"] is None
    assert down["redis_error"]
    assert down["totals"]["messages"] >= 0


async def test_every_counter_adds_its_totals(db_engine: AsyncEngine) -> None:
    async def probe(session: AsyncSession) -> Mapping[str, int]:
        return {"probes": 2}

    async with create_sessionmaker(db_engine)() as session:
        stats = await service.store_stats(
            session, pool=None, redis=None,
            counters=(*service.STORE_COUNTERS, ("probe", probe)),
        )
    assert stats.totals["probes"] == 2
    assert {"messages", "runs", "tenants", "events", "locks_held"} <= set(stats.totals)
