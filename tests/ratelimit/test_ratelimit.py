"""Rate limits: per tenant and per client address, in the process or in Redis, and Redis down."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from limits.aio.storage import MemoryStorage
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import PRODUCTION_RATE_LIMITS, Settings
from memory_layer.kit.observability.metrics import Metrics
from memory_layer.ratelimit.service import LimitScope, RateLimited, RateLimiter, parse_limits
from tests.fixtures.app import ADMIN_KEY, SERVICE_KEY, running_client
from tests.fixtures.redis import RedisServer
from tests.fixtures.tenants import new_tenant, tenant_key
from tests.support.metrics import sample_value, scrape

UNLIMITED = ("/v1/admin/health", "/v1/admin/readiness", "/metrics")


async def test_a_tenant_past_its_limit_gets_429_and_other_tenants_do_not(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    mine, theirs = new_tenant(), new_tenant()
    my_key = {"X-API-Key": await tenant_key(db_engine, mine)}
    their_key = {"X-API-Key": await tenant_key(db_engine, theirs)}
    settings = settings_factory(tenant_rate_limit="3/minute")
    async with running_client(settings) as client:
        served = [await client.get("/v1/stats", headers=my_key) for _ in range(3)]
        refused = await client.get("/v1/stats", headers=my_key)
        other = await client.get("/v1/stats", headers=their_key)
        exposition = await scrape(client)

    assert [r.status_code for r in served] == [200, 200, 200]
    assert [r.headers["X-RateLimit-Remaining"] for r in served] == ["2", "1", "0"]
    assert served[0].headers["X-RateLimit-Limit"] == "3"
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert "tenant rate limit of 3" in refused.json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["X-RateLimit-Reset"]) >= int(time.time())
    assert other.status_code == 200
    assert other.headers["X-RateLimit-Remaining"] == "2"
    assert sample_value(exposition, "memory_rate_limited_requests_total", {"scope": "tenant"}) == 1


async def test_the_global_limit_counts_per_address_and_spares_probes_and_metrics(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(global_rate_limit="2/minute")
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        statuses = [(await client.get("/v1/admin/embeddings")).status_code for _ in range(3)]
        probes = [(await client.get(path)).status_code for path in UNLIMITED for _ in range(3)]
        refused = await client.get("/v1/admin/embeddings")
        exposition = await scrape(client)

    assert statuses == [200, 200, 429]
    assert probes == [200] * 9
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert "Retry-After" in refused.headers
    assert sample_value(exposition, "memory_rate_limited_requests_total", {"scope": "global"}) == 2


async def test_limits_in_redis_hold_across_replicas(
    settings_factory: Callable[..., Settings],
    db_engine: AsyncEngine,
    redis_url: str,
    redis_prefix: str,
) -> None:
    tenant = new_tenant()
    key = {"X-API-Key": await tenant_key(db_engine, tenant)}
    settings = settings_factory(
        tenant_rate_limit="4/minute", redis_url=redis_url, redis_key_prefix=redis_prefix
    )
    async with running_client(settings) as one, running_client(settings) as two:
        statuses = [
            (await replica.get("/v1/stats", headers=key)).status_code
            for replica in (one, two, one, two, one, two)
        ]
    assert statuses == [200, 200, 200, 200, 429, 429]


async def test_redis_down_serves_requests_uncounted_or_refuses_them_when_told(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    key = {"X-API-Key": await tenant_key(db_engine, new_tenant())}
    closed = "redis://127.0.0.1:1/0"
    fail_open = settings_factory(tenant_rate_limit="1/minute", redis_url=closed)
    async with running_client(fail_open) as client:
        served = [await client.get("/v1/stats", headers=key) for _ in range(3)]
        exposition = await scrape(client)
    assert [r.status_code for r in served] == [200, 200, 200]
    assert "X-RateLimit-Limit" not in served[0].headers  # nothing was counted
    assert sample_value(
        exposition, "memory_rate_limit_storage_errors_total", {"scope": "tenant"}
    ) == 3

    fail_closed = settings_factory(
        tenant_rate_limit="1/minute", redis_url=closed, rate_limit_fail_open=False
    )
    async with running_client(fail_closed) as client:
        refused = await client.get("/v1/stats", headers=key)
        probe = await client.get("/v1/admin/health")
    assert refused.status_code == 503
    assert refused.json()["error"] == "rate_limit_unavailable"
    assert probe.status_code == 200


async def test_counting_resumes_when_redis_comes_back(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine, private_redis: RedisServer
) -> None:
    key = {"X-API-Key": await tenant_key(db_engine, new_tenant())}
    settings = settings_factory(tenant_rate_limit="2/minute", redis_url=private_redis.url)
    async with running_client(settings) as client:
        before = (await client.get("/v1/stats", headers=key)).status_code
        private_redis.stop()
        during = [(await client.get("/v1/stats", headers=key)).status_code for _ in range(3)]
        private_redis.start()
        after = [(await client.get("/v1/stats", headers=key)).status_code for _ in range(3)]
    assert before == 200
    assert during == [200, 200, 200]
    # The restarted server kept nothing (no persistence): a fresh window, and the limit holds.
    assert after == [200, 200, 429]


async def test_a_tenant_policy_overrides_the_tenant_limit_from_the_next_request(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    tenant = new_tenant()
    key = {"X-API-Key": await tenant_key(db_engine, tenant)}
    admin = {"X-API-Key": ADMIN_KEY}
    settings = settings_factory(tenant_rate_limit="100/minute")
    async with running_client(settings) as client:
        before = await client.get("/v1/stats", headers=key)
        changed = await client.put(
            f"/v1/admin/tenants/{tenant}/policy", json={"rate_limit": "2/minute"}, headers=admin
        )
        assert changed.status_code == 200, changed.text
        after = [await client.get("/v1/stats", headers=key) for _ in range(3)]
        lifted = await client.put(
            f"/v1/admin/tenants/{tenant}/policy", json={"rate_limit": ""}, headers=admin
        )
        assert lifted.status_code == 200, lifted.text
        unlimited = await client.get("/v1/stats", headers=key)

    assert before.headers["X-RateLimit-Limit"] == "100"
    assert [r.status_code for r in after] == [200, 200, 429]
    assert after[0].headers["X-RateLimit-Limit"] == "2"
    assert unlimited.status_code == 200
    assert "X-RateLimit-Limit" not in unlimited.headers


async def test_the_in_process_count_is_two_counters_per_key_however_busy(
    settings_factory: Callable[..., Settings],
) -> None:
    """A sliding-window counter: thousands of requests leave two counters for the key, not a
    list of every request (an exact moving window's memory and per-request cost grow with the
    traffic)."""
    limiter = RateLimiter.build(settings_factory(), None, Metrics())
    items = parse_limits("1000000/minute")
    for _ in range(3000):
        verdict = await limiter.hit(LimitScope.global_, "10.0.0.1", items)
    assert verdict is not None
    assert verdict.remaining == 1_000_000 - 3000
    assert isinstance(limiter.storage, MemoryStorage)
    assert limiter.storage.events == {}
    assert len([key for key in limiter.storage.storage if "10.0.0.1" in key]) <= 2


async def test_the_window_slides_the_previous_count_out(
    settings_factory: Callable[..., Settings],
) -> None:
    limiter = RateLimiter.build(settings_factory(), None, Metrics())
    items = parse_limits("3/second")
    for _ in range(3):
        await limiter.hit(LimitScope.tenant, "t-slide", items)
    refused = None
    try:
        await limiter.hit(LimitScope.tenant, "t-slide", items)
    except RateLimited as exc:
        refused = exc
    assert refused is not None
    # Two windows later the previous one weighs nothing: the full limit is free again.
    await asyncio.sleep(2.05)
    for _ in range(3):
        verdict = await limiter.hit(LimitScope.tenant, "t-slide", items)
    assert verdict is not None
    assert verdict.allowed


async def test_a_service_key_counts_against_the_tenant_it_names_wherever_it_names_it(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    """The original design's deployment: one service key naming tenant_id in every request."""
    tenant, other = new_tenant(), new_tenant()
    service = {"X-API-Key": SERVICE_KEY}
    bound = {"X-API-Key": await tenant_key(db_engine, tenant)}
    settings = settings_factory(tenant_rate_limit="10/minute")
    async with running_client(settings, headers=service) as client:
        answers = [await client.get("/v1/stats", params={"tenant_id": tenant}) for _ in range(4)]
        answers += [
            await client.post("/v1/memory/search", json={"tenant_id": tenant, "query": "hello"})
            for _ in range(4)
        ]
        answers += [
            await client.post("/v1/messages", json={
                "tenant_id": tenant, "conversation_id": "c", "role": "user", "content": f"hi {n}",
            })
            for n in range(4)
        ]
        # The same tenant through its own key shares the count; another tenant has its own.
        with_own_key = await client.get("/v1/stats", headers=bound)
        elsewhere = await client.get("/v1/stats", params={"tenant_id": other})
        # A request that names no tenant is refused by the route (422), not counted anywhere.
        unnamed = await client.get("/v1/stats")
        empty = await client.post("/v1/messages", content=b"")
        not_an_object = await client.post("/v1/memory/search", json=[tenant])

    statuses = [answer.status_code for answer in answers]
    assert statuses == [200] * 10 + [429, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers[:10]] == [
        str(n) for n in range(9, -1, -1)
    ]
    assert "tenant rate limit of 10" in answers[-1].json()["detail"]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert with_own_key.status_code == 429
    assert elsewhere.status_code == 200
    assert elsewhere.headers["X-RateLimit-Remaining"] == "9"
    assert unnamed.status_code == 422
    assert unnamed.json()["error"] == "tenant_required"
    assert (empty.status_code, not_an_object.status_code) == (422, 422)


async def test_a_policy_rate_limit_applies_to_a_service_key_and_admin_routes_stay_open(
    settings_factory: Callable[..., Settings],
) -> None:
    """An admin key acting for a tenant counts against it like any key; /v1/admin/* routes do
    not count against a tenant, so an operator can always lift a throttled tenant's limit."""
    tenant = new_tenant()
    service = {"X-API-Key": SERVICE_KEY}
    admin = {"X-API-Key": ADMIN_KEY}
    settings = settings_factory(tenant_rate_limit="off")
    async with running_client(settings) as client:
        before = await client.get("/v1/stats", params={"tenant_id": tenant}, headers=service)
        put = await client.put(
            f"/v1/admin/tenants/{tenant}/policy", json={"rate_limit": "3/minute"}, headers=admin
        )
        assert put.status_code == 200, put.text
        as_service = [
            (await client.get("/v1/stats", params={"tenant_id": tenant}, headers=service))
            for _ in range(2)
        ]
        as_admin = await client.get("/v1/stats", params={"tenant_id": tenant}, headers=admin)
        throttled = await client.get("/v1/stats", params={"tenant_id": tenant}, headers=service)
        # Admin routes about the throttled tenant still answer...
        admin_reads = [
            (await client.get(f"/v1/admin/tenants/{tenant}/policy", headers=admin)).status_code
            for _ in range(5)
        ]
        audit = await client.get("/v1/admin/audit", params={"tenant_id": tenant}, headers=admin)
        # ... and lifting the limit lets the tenant through at once.
        lifted = await client.put(
            f"/v1/admin/tenants/{tenant}/policy", json={"rate_limit": ""}, headers=admin
        )
        after = await client.get("/v1/stats", params={"tenant_id": tenant}, headers=service)

    assert before.status_code == 200
    assert "X-RateLimit-Limit" not in before.headers  # no limit for this tenant yet
    assert [r.status_code for r in as_service] == [200, 200]
    assert as_service[0].headers["X-RateLimit-Limit"] == "3"
    assert as_admin.status_code == 200
    assert as_admin.headers["X-RateLimit-Remaining"] == "0"
    assert throttled.status_code == 429
    assert admin_reads == [200] * 5
    assert audit.status_code == 200
    assert lifted.status_code == 200
    assert after.status_code == 200


async def test_an_import_counts_against_its_tenant_without_its_stream_being_read_early(
    settings_factory: Callable[..., Settings],
) -> None:
    tenant = new_tenant()
    lines = "".join(
        json.dumps({
            "message_id": str(uuid.uuid4()), "conversation_id": "c", "role": "user",
            "content": f"line {n}", "importance": 0.5, "created_at": "2026-01-31T12:00:00Z",
        }) + "\n"
        for n in range(3)
    )
    settings = settings_factory(tenant_rate_limit="5/minute")
    async with running_client(settings, headers={"X-API-Key": SERVICE_KEY}) as client:
        imported = await client.post(
            "/v1/import", params={"tenant_id": tenant}, content=lines,
            headers={"Content-Type": "application/x-ndjson"},
        )
    assert imported.status_code == 200, imported.text
    assert imported.json()["stored"] == 3
    assert imported.headers["X-RateLimit-Remaining"] == "4"


async def test_development_never_throttles_a_local_script(
    settings_factory: Callable[..., Settings],
) -> None:
    """`make run`'s defaults: a script storing a few hundred messages and searching is never
    answered 429 (the limits are off unless set)."""
    settings = settings_factory(global_rate_limit=None, tenant_rate_limit=None)
    assert (settings.global_rate_limit, settings.tenant_rate_limit) == ("", "")
    tenant = new_tenant()
    async with running_client(settings, headers={"X-API-Key": SERVICE_KEY}) as client:
        statuses = Counter([
            (await client.get("/v1/stats", params={"tenant_id": tenant})).status_code
            for _ in range(260)
        ])
    assert statuses == {200: 260}


def test_production_defaults_are_sized_for_a_backend_and_a_set_value_wins() -> None:
    production: dict[str, Any] = {
        "environment": "production", "api_keys": "k", "redis_url": "redis://r:6379/0"
    }
    defaults = Settings(_env_file=None, **production)
    assert defaults.global_rate_limit == PRODUCTION_RATE_LIMITS["global_rate_limit"]
    assert defaults.tenant_rate_limit == PRODUCTION_RATE_LIMITS["tenant_rate_limit"]
    # Per second, the address limit leaves room for many people behind one backend.
    per_second = [item.amount / item.get_expiry() for item in parse_limits(defaults.global_rate_limit)]
    assert min(per_second) >= 100
    chosen = Settings(
        _env_file=None, **production, global_rate_limit="off", tenant_rate_limit="5/second"
    )
    assert (chosen.global_rate_limit, chosen.tenant_rate_limit) == ("", "5/second")
    development = Settings(_env_file=None)
    assert (development.global_rate_limit, development.tenant_rate_limit) == ("", "")
