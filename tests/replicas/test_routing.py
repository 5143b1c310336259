"""Read routing without a standby: tokens, lag arithmetic, the cache's floor, and what happens when
the configured replica is not one (the primary's own URL): it is left out and reads go to the
primary. tests/replicas/test_streaming_replica.py runs a real standby."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from memory_layer.config import ConfigurationError, Settings, check_startup_settings
from memory_layer.kit.cache import SearchCache
from memory_layer.kit.db.replicas import ReplicaPool, format_lsn, parse_lsn
from memory_layer.kit.observability.metrics import Metrics
from tests.fixtures.app import ADMIN_KEY, AppClient, running_client
from tests.fixtures.messages import remember
from tests.fixtures.tenants import new_tenant
from tests.support.cli import free_port
from tests.support.metrics import sample_value, scrape

TOKEN = "Memory-Consistency-Token"
READ_FROM = "Memory-Read-From"


def test_wal_positions_read_and_print_as_postgresql_does() -> None:
    assert parse_lsn("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert format_lsn(parse_lsn("16/B374D848") or 0) == "16/B374D848"
    assert parse_lsn("0/0") == 0
    for wrong in ("", "16", "x/1", "1/2/3", "123456789/1"):
        assert parse_lsn(wrong) is None


def test_lag_is_the_time_since_the_newest_primary_position_the_replica_reached() -> None:
    pool = ReplicaPool(
        primary_engine=None,  # type: ignore[arg-type]
        primary_reads=None,  # type: ignore[arg-type]
        replicas=[], metrics=Metrics(), max_lag_seconds=5, wait_seconds=0,
        check_interval_seconds=1,
    )
    assert pool._lag(100, now=10.0) is None  # no sample of the primary yet
    pool._primary_history.extend([(1.0, 100), (2.0, 200), (3.0, 300)])
    assert pool._lag(300, now=3.5) == 0.0  # caught up with the last sample
    assert pool._lag(250, now=3.5) == 1.5  # has what the primary had at 2.0
    assert pool._lag(50, now=3.5) == 2.5  # behind every sample: at least since the oldest


async def test_a_cached_search_serves_a_token_only_if_it_was_read_that_far(
    redis_url: str, redis_prefix: str, settings_factory: Callable[..., Settings]
) -> None:
    redis = Redis.from_url(redis_url)
    try:
        cache = SearchCache(redis, settings_factory(redis_key_prefix=redis_prefix), Metrics())
        await cache.put("t", "g", "replica", b"rows", read_lsn=100)
        await cache.put("t", "g", "primary", b"rows")
        assert await cache.get("t", "g", "replica") == b"rows"
        assert await cache.get("t", "g", "replica", floor=100) == b"rows"
        assert await cache.get("t", "g", "replica", floor=101) is None
        assert await cache.get("t", "g", "primary", floor=2**63) == b"rows"
    finally:
        await redis.aclose()


async def test_without_replicas_nothing_changes(settings_factory: Callable[..., Settings]) -> None:
    async with running_client(settings_factory(), {"X-API-Key": ADMIN_KEY}) as client:
        tenant = new_tenant()
        written = await client.post("/v1/messages", json={
            "tenant_id": tenant, "conversation_id": "c", "role": "user", "content": "plain",
        })
        assert written.status_code == 200
        assert TOKEN not in written.headers
        search = await client.get("/v1/memory/search", params={"tenant_id": tenant, "query": "x"})
        assert READ_FROM not in search.headers
        assert "replicas" not in (await client.get("/v1/admin/readiness")).json()["checks"]


async def test_a_replica_that_is_not_a_standby_is_left_out_and_reads_go_to_the_primary(
    settings_factory: Callable[..., Settings], database_url: str
) -> None:
    settings = settings_factory(database_replica_urls=[database_url])
    async with running_client(settings, {"X-API-Key": ADMIN_KEY}) as client:
        tenant = new_tenant()
        message_id = await remember(client, tenant, "the parrot is called Rio")
        written = await client.get(f"/v1/messages/{message_id}", params={"tenant_id": tenant})
        assert written.headers[READ_FROM] == "primary"
        wrote = await client.post("/v1/messages", json={
            "tenant_id": tenant, "conversation_id": "c", "role": "user", "content": "parrot two",
        })
        token = wrote.headers[TOKEN]
        assert parse_lsn(token) is not None
        for headers in ({TOKEN: token}, {TOKEN: "not-a-position"}, {}):
            found = await client.post(
                "/v1/memory/search",
                json={"tenant_id": tenant, "query": "parrot", "mode": "keyword"},
                headers=headers,
            )
            assert found.status_code == 200, found.text
            assert found.headers[READ_FROM] == "primary"
            assert len(found.json()["items"]) == 2
        # Listings, history and stats take the read route too.
        for path, params in [
            ("/v1/messages", {"tenant_id": tenant}),
            ("/v1/conversations", {"tenant_id": tenant}),
            ("/v1/conversations/c/messages", {"tenant_id": tenant}),
            ("/v1/stats", {"tenant_id": tenant}),
            ("/v1/export", {"tenant_id": tenant}),
        ]:
            answer = await client.get(path, params=params)
            assert answer.status_code == 200, (path, answer.text)
            assert answer.headers[READ_FROM] == "primary", path
        readiness = (await client.get("/v1/admin/readiness")).json()
        assert readiness["status"] == "ready"
        [replica] = readiness["checks"]["replicas"]["detail"]
        assert replica["healthy"] is False
        assert "not a standby" in replica["reason"]
        # A state read stays on the primary: no read route, no header.
        state = await client.get("/v1/conversations/c/state", params={"tenant_id": tenant})
        assert READ_FROM not in state.headers


async def fallbacks(client: AppClient, reason: str) -> float:
    return sample_value(await scrape(client), "memory_db_replica_fallbacks_total",
                        {"reason": reason}) or 0.0


async def test_a_replica_that_fails_under_a_read_hands_it_to_the_primary(
    settings_factory: Callable[..., Settings],
) -> None:
    # Nothing listens there: the start-up check leaves it out; marked well by hand, as a replica
    # that stops between two checks is, the read meets a refused connection.
    gone = f"postgresql://postgres@127.0.0.1:{free_port()}/memory_layer"
    # No check after start-up: none may correct the state this test sets.
    settings = settings_factory(database_replica_urls=[gone], replica_check_interval_seconds=3600)
    async with running_client(settings, {"X-API-Key": ADMIN_KEY}) as client:
        tenant = new_tenant()
        await remember(client, tenant, "the parrot is called Rio")
        pool: ReplicaPool = client.app.state.replicas
        [replica] = pool.replicas
        assert replica.healthy is False
        replica.healthy = True
        found = await client.post(
            "/v1/memory/search", json={"tenant_id": tenant, "query": "parrot", "mode": "keyword"}
        )
        assert found.status_code == 200, found.text
        assert found.headers[READ_FROM] == "primary"
        assert len(found.json()["items"]) == 1
        assert replica.healthy is False
        assert await fallbacks(client, "replica_failed") == 1


async def test_a_read_whose_token_no_replica_reached_goes_to_the_primary(
    settings_factory: Callable[..., Settings], database_url: str
) -> None:
    # The primary's own URL stands for a replica that replays nothing: its
    # pg_last_wal_replay_lsn() is NULL.
    settings = settings_factory(
        database_replica_urls=[database_url], replica_wait_ms=20,
        replica_check_interval_seconds=3600,
    )
    async with running_client(settings, {"X-API-Key": ADMIN_KEY}) as client:
        tenant = new_tenant()
        wrote = await client.post("/v1/messages", json={
            "tenant_id": tenant, "conversation_id": "c", "role": "user", "content": "parrot",
        })
        pool: ReplicaPool = client.app.state.replicas
        pool.replicas[0].healthy = True
        found = await client.post(
            "/v1/memory/search", json={"tenant_id": tenant, "query": "parrot", "mode": "keyword"},
            headers={TOKEN: wrote.headers[TOKEN]},
        )
        assert found.headers[READ_FROM] == "primary"
        assert len(found.json()["items"]) == 1
        assert await fallbacks(client, "behind_token") == 1
        # Without a token the same replica takes the read.
        anyway = await client.post(
            "/v1/memory/search", json={"tenant_id": tenant, "query": "parrot", "mode": "keyword"}
        )
        assert anyway.headers[READ_FROM] == "replica-0"


def test_replicas_need_a_primary_the_operator_runs() -> None:
    settings = Settings(_env_file=None, database_replica_urls="postgresql://standby/memory")
    assert [url.get_secret_value() for url in settings.database_replica_urls] == [
        "postgresql://standby/memory"
    ]
    with pytest.raises(ConfigurationError, match="MEMORY_DATABASE_URL"):
        check_startup_settings(settings)
