"""The process's copies of tenant policies and channel rules (kit/tenant_config.py): served from
memory while the process LISTENs, dropped when any process (or plain SQL) changes them, never
kept without a listener or from a read that a change overtook."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from memory_layer.kit.db.wakeups import Wakeups
from memory_layer.kit.tenant_config import TenantConfigCache
from tests.channels.helpers import put_channel
from tests.fixtures.app import ADMIN_KEY, AppClient, running_client
from tests.fixtures.messages import message_body
from tests.policies.helpers import set_policy
from tests.support.waiting import wait_until


def cache_of(client: AppClient) -> TenantConfigCache:
    cache: TenantConfigCache = client.app.state.tenant_config
    return cache


async def status_of_write(client: AppClient, tenant: str, content: str, **fields: str) -> int:
    response = await client.post("/v1/messages", json=message_body(tenant, content, **fields))
    return response.status_code


async def test_a_policy_changed_by_another_process_or_by_sql_reaches_the_cached_copy(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine, tenant: str
) -> None:
    settings = settings_factory()
    async with (
        running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as first,
        running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as second,
    ):
        assert cache_of(second).active
        await set_policy(first, tenant, max_messages=1)
        assert await status_of_write(second, tenant, "the one allowed") == 200
        hits = cache_of(second).hits
        assert await status_of_write(second, tenant, "one too many") == 409
        assert cache_of(second).hits > hits  # the second write read the policy from memory

        await set_policy(first, tenant, max_messages=3)  # the other process changes it

        async def second_accepts(content: str) -> bool:
            return await status_of_write(second, tenant, content) == 200

        await wait_until(lambda: second_accepts("after the change"), timeout=30,
                         message="the second process sees the raised quota")

        async with db_engine.begin() as connection:  # plain SQL, no route of ours
            await connection.execute(
                text("UPDATE tenant_policies SET max_messages = 10 WHERE tenant_id = :t"),
                {"t": tenant},
            )
        writes = iter(range(100))
        await wait_until(
            lambda: second_accepts(f"after the SQL change {next(writes)}"), timeout=30,
            message="the second process sees the quota set in SQL",
        )


async def test_the_process_that_changes_a_policy_uses_it_at_once(
    client: AppClient, tenant: str
) -> None:
    await set_policy(client, tenant, max_messages=1)
    assert await status_of_write(client, tenant, "the one allowed") == 200
    assert await status_of_write(client, tenant, "refused, cached") == 409
    await set_policy(client, tenant, max_messages=2)
    assert await status_of_write(client, tenant, "allowed by the new policy") == 200


async def test_channel_rules_changed_elsewhere_reach_the_writes(
    settings_factory: Callable[..., Settings], tenant: str
) -> None:
    settings = settings_factory()
    async with (
        running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as first,
        running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as second,
    ):
        await put_channel(first, tenant, "support")
        assert await status_of_write(second, tenant, "ok", channel="support") == 200
        assert await status_of_write(second, tenant, "unknown", channel="sales") == 422
        await put_channel(first, tenant, "sales")

        async def second_accepts_sales() -> bool:
            return await status_of_write(second, tenant, "now known", channel="sales") == 200

        await wait_until(second_accepts_sales, timeout=30,
                         message="the second process knows the new channel")


async def test_without_a_listener_nothing_is_kept(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine, tenant: str
) -> None:
    # Behind a transaction pooler the process cannot LISTEN: every request reads the database.
    settings = settings_factory(db_transaction_pooler=True)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        assert not cache_of(client).active
        await set_policy(client, tenant, max_messages=1)
        assert await status_of_write(client, tenant, "the one allowed") == 200
        assert await status_of_write(client, tenant, "one too many") == 409
        async with db_engine.begin() as connection:
            await connection.execute(
                text("UPDATE tenant_policies SET max_messages = 5 WHERE tenant_id = :t"),
                {"t": tenant},
            )
        assert await status_of_write(client, tenant, "seen at once") == 200
        assert cache_of(client).hits == 0


async def test_a_read_overtaken_by_a_change_is_not_kept() -> None:
    wakeups = Wakeups(None)
    wakeups.listening.set()
    cache = TenantConfigCache(wakeups)
    loads = 0

    async def load_while_it_changes() -> int:
        nonlocal loads
        loads += 1
        wakeups._on_notify(None, 0, "memory_layer_wakeups", "config:t1")
        await asyncio.sleep(0)
        return loads

    assert await cache.get("policy", "t1", load_while_it_changes) == 1
    assert await cache.get("policy", "t1", load_while_it_changes) == 2  # not kept: read again

    async def load() -> int:
        return 7

    assert await cache.get("policy", "t1", load) == 7
    assert await cache.get("policy", "t1", load_while_it_changes) == 7  # kept
    wakeups._on_notify(None, 0, "memory_layer_wakeups", "config:t2")  # another tenant
    assert await cache.get("policy", "t1", load_while_it_changes) == 7
    wakeups._on_notify(None, 0, "memory_layer_wakeups", "config:t1")
    assert await cache.get("policy", "t1", load) == 7
    assert cache.hits == 2
