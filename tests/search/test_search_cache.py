"""The shared caches in Redis: search results per tenant generation, and query vectors.

Two apps on one Redis and one database stand for two API replicas: whatever one writes, a search
through the other sees at once, whichever write it was.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from memory_layer.config import Settings
from tests.fixtures.app import ADMIN_KEY, AppClient, running_client
from tests.fixtures.messages import remember
from tests.fixtures.redis import RedisServer
from tests.fixtures.tenants import new_tenant
from tests.support.metrics import sample_value, scrape
from tests.support.waiting import wait_until

ADMIN = {"X-API-Key": ADMIN_KEY}


@asynccontextmanager
async def replicas(settings: Settings) -> AsyncIterator[tuple[AppClient, AppClient]]:
    async with running_client(settings, ADMIN) as one, running_client(settings, ADMIN) as two:
        yield one, two


async def found(client: AppClient, tenant: str, query: str = "parrot") -> list[str]:
    response = await client.post(
        "/v1/memory/search",
        json={"tenant_id": tenant, "query": query, "mode": "keyword", "top_k": 20},
    )
    assert response.status_code == 200, response.text
    return sorted(item["content"] for item in response.json()["items"])


async def counter(client: AppClient, name: str, cache: str) -> float:
    return sample_value(await scrape(client), name, {"cache": cache}) or 0.0


async def test_a_search_is_answered_once_for_every_replica(
    settings_factory: Callable[..., Settings], redis_url: str, redis_prefix: str
) -> None:
    tenant = new_tenant()
    settings = settings_factory(redis_url=redis_url, redis_key_prefix=redis_prefix)
    async with replicas(settings) as (one, two):
        await remember(one, tenant, "my parrot is called Rio")
        first = await found(one, tenant)
        second = await found(two, tenant)
        assert first == second == ["my parrot is called Rio"]
        assert await counter(one, "memory_cache_misses_total", "search_results") == 1
        assert await counter(two, "memory_cache_hits_total", "search_results") == 1
        # Another tenant's same search is not the first tenant's entry.
        assert await found(two, new_tenant()) == []
        assert await counter(two, "memory_cache_misses_total", "search_results") == 1


async def test_every_kind_of_write_is_seen_by_the_next_search_on_another_replica(
    settings_factory: Callable[..., Settings], redis_url: str, redis_prefix: str
) -> None:
    tenant = new_tenant()
    settings = settings_factory(redis_url=redis_url, redis_key_prefix=redis_prefix)
    old = (datetime.now(UTC) - timedelta(days=400)).isoformat()
    async with replicas(settings) as (one, two):
        state: dict[str, Any] = {}

        async def write() -> None:
            state["id"] = await remember(one, tenant, "parrot one", conversation_id="c1")

        async def batch() -> None:
            items = [
                {"conversation_id": "c2", "role": "user", "content": "parrot two",
                 "user_id": "u-erased"},
                {"conversation_id": "c3", "role": "user", "content": "parrot three",
                 "created_at": old, "importance_override": 0.1},
            ]
            response = await one.post(
                "/v1/messages/batch", json={"tenant_id": tenant, "messages": items}
            )
            assert response.status_code == 200, response.text

        async def edit() -> None:
            response = await one.patch(
                f"/v1/messages/{state['id']}", params={"tenant_id": tenant},
                json={"content": "parrot one, edited"},
            )
            assert response.status_code == 200, response.text

        async def delete() -> None:
            response = await one.delete(f"/v1/messages/{state['id']}", params={"tenant_id": tenant})
            assert response.status_code == 200, response.text

        async def erase() -> None:
            response = await one.delete("/v1/users/u-erased", params={"tenant_id": tenant})
            assert response.status_code == 200, response.text

        async def import_() -> None:
            line = {"message_id": "6f1c54e4-55d0-4c47-a1f2-0b8c2f1c0a11", "conversation_id": "c4",
                    "role": "user", "content": "parrot four", "importance": 0.5,
                    "created_at": datetime.now(UTC).isoformat()}
            response = await one.post(
                "/v1/import", params={"tenant_id": tenant},
                content=json.dumps(line).encode() + b"\n",
                headers={"Content-Type": "application/x-ndjson"},
            )
            assert response.status_code == 200, response.text

        async def retention() -> None:
            response = await one.post(
                "/v1/admin/retention/run",
                json={"tenant_id": tenant, "older_than_days": 90, "importance_below": 0.5,
                      "action": "delete"},
            )
            assert response.json()["deleted"] == 1, response.text

        async def delete_conversation() -> None:
            response = await one.delete("/v1/conversations/c4", params={"tenant_id": tenant})
            assert response.status_code == 200, response.text

        steps: list[tuple[Callable[[], Awaitable[None]], list[str]]] = [
            (write, ["parrot one"]),
            (batch, ["parrot one", "parrot three", "parrot two"]),
            (edit, ["parrot one, edited", "parrot three", "parrot two"]),
            (delete, ["parrot three", "parrot two"]),
            (erase, ["parrot three"]),
            (import_, ["parrot four", "parrot three"]),
            (retention, ["parrot four"]),
            (delete_conversation, []),
        ]
        for step, expected in steps:
            await found(two, tenant)  # cached: the entry a stale cache would serve
            await step()
            assert await found(two, tenant) == expected, step.__name__
        # Each search before a write (but the very first) was a hit: a stale entry was there.
        assert await counter(two, "memory_cache_hits_total", "search_results") == len(steps) - 1


async def test_query_vectors_are_shared_between_replicas(
    settings_factory: Callable[..., Settings], redis_url: str, redis_prefix: str
) -> None:
    tenant = new_tenant()
    settings = settings_factory(
        redis_url=redis_url, redis_key_prefix=redis_prefix, search_cache_ttl_seconds=0
    )
    async with replicas(settings) as (one, two):
        body = {"tenant_id": tenant, "query": "where do I live?", "mode": "vector"}
        first = await one.post("/v1/memory/search", json=body)
        second = await two.post("/v1/memory/search", json=body)
        assert first.status_code == second.status_code == 200
        assert await counter(one, "memory_cache_misses_total", "query_vectors") == 1
        assert await counter(two, "memory_cache_hits_total", "query_vectors") == 1
        assert await counter(two, "memory_cache_hits_total", "search_results") == 0
        # The vector in Redis is the provider's, bit for bit.
        expected = await two.embedder.embed_query("where do I live?")
        assert expected == await one.embedder.embed_query("where do I live?")


async def test_without_redis_searches_and_writes_go_on_uncached(
    settings_factory: Callable[..., Settings],
) -> None:
    tenant = new_tenant()
    settings = settings_factory(redis_url="redis://127.0.0.1:1/0")
    async with running_client(settings, ADMIN) as client:
        await remember(client, tenant, "parrot in the dark")
        assert await found(client, tenant) == ["parrot in the dark"]
        hybrid = await client.post("/v1/memory/search", json={"tenant_id": tenant, "query": "x"})
        assert hybrid.status_code == 200
        assert await counter(client, "memory_cache_errors_total", "search_results") >= 2
        assert await counter(client, "memory_cache_errors_total", "query_vectors") >= 1
        assert await counter(client, "memory_cache_hits_total", "search_results") == 0


async def test_an_invalidation_redis_missed_is_made_before_the_next_cached_search(
    settings_factory: Callable[..., Settings], private_redis: RedisServer
) -> None:
    tenant = new_tenant()
    settings = settings_factory(redis_url=private_redis.url, redis_timeout_seconds=0.2)
    admin = Redis.from_url(private_redis.url)
    try:
        async with replicas(settings) as (one, two):
            await remember(one, tenant, "parrot before")
            assert await found(two, tenant) == ["parrot before"]  # cached by two
            # Redis stops answering while one acknowledges a write: the invalidation fails...
            await admin.client_pause(1500, all=True)
            await remember(one, tenant, "parrot during")
            assert await counter(one, "memory_cache_errors_total", "search_results") >= 1
            await admin.client_unpause()
            # ...and is made before one's next use of the cache, with the old entries intact.
            assert await found(one, tenant) == ["parrot before", "parrot during"]
            assert await found(two, tenant) == ["parrot before", "parrot during"]
    finally:
        await admin.aclose()


async def test_a_cached_result_dies_with_the_first_message_it_holds_that_expires(
    settings_factory: Callable[..., Settings], redis_url: str, redis_prefix: str
) -> None:
    tenant = new_tenant()
    settings = settings_factory(
        redis_url=redis_url, redis_key_prefix=redis_prefix, search_cache_ttl_seconds=600
    )
    async with running_client(settings, ADMIN) as client:
        await remember(client, tenant, "my parrot is called Rio")
        await remember(client, tenant, "the parrot sings at dawn", ttl_seconds=2)
        assert len(await found(client, tenant)) == 2  # computed, and cached for 600 s at most
        assert len(await found(client, tenant)) == 2
        assert await counter(client, "memory_cache_hits_total", "search_results") == 1

        async def gone() -> bool:
            return await found(client, tenant) == ["my parrot is called Rio"]

        # No write happened: only the entry's own lifetime (the message's expiry) ends it.
        await wait_until(gone, timeout=15, interval=0.25)
