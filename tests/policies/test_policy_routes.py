"""GET/PUT /v1/admin/tenants/{tenant_id}/policy: defaults, overrides, validation, admin only,
and a change seen by the next request of another replica."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from memory_layer.kit.db.engine import create_sessionmaker
from memory_layer.policies.service import state_quota_bytes, tenant_rate_limit
from tests.fixtures.app import ADMIN_KEY, AppClient, running_client
from tests.fixtures.messages import count_rows, message_body
from tests.fixtures.tenants import new_tenant, tenant_key
from tests.policies.helpers import set_policy


async def test_a_tenant_without_overrides_follows_the_settings(
    settings_factory: Callable[..., Settings], tenant: str
) -> None:
    settings = settings_factory(
        default_ttl_seconds=3600, quota_messages=1000, pii_mode="detect",
        tenant_rate_limit="100/minute", retention_max_age_days=30,
    )
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        response = await client.get(f"/v1/admin/tenants/{tenant}/policy")
    assert response.status_code == 200
    body = response.json()
    assert body["updated_at"] is None
    assert all(value in (None, {}) for value in body["overrides"].values())
    effective = body["effective"]
    assert effective["default_ttl_seconds"] == 3600
    assert effective["max_messages"] == 1000
    assert effective["max_content_bytes"] == 0
    assert effective["pii_mode"] == "detect"
    assert effective["rate_limit"] == "100/minute"
    assert (effective["archive_after_days"], effective["delete_after_days"]) == (30, 0)


async def test_put_replaces_the_overrides_and_null_returns_to_the_default(
    client: AppClient, tenant: str
) -> None:
    body = await set_policy(
        client, tenant, max_messages=5, pii_mode="redact", rate_limit="10/second;500/hour",
        delete_after_days=365, retention_by_kind={"fact": {"delete_after_days": 0}},
    )
    assert body["overrides"]["max_messages"] == 5
    assert body["effective"]["pii_mode"] == "redact"
    assert body["effective"]["retention_by_kind"] == {
        "fact": {"archive_after_days": 90.0, "delete_after_days": 0.0}
    }
    assert body["updated_at"] is not None

    again = await set_policy(client, tenant, max_content_bytes=1000)
    assert again["overrides"]["max_messages"] is None
    assert again["effective"]["max_messages"] == 0
    assert again["effective"]["pii_mode"] == "off"
    assert again["effective"]["max_content_bytes"] == 1000
    read = await client.get(f"/v1/admin/tenants/{tenant}/policy")
    assert read.json() == again


async def test_bad_values_are_422(client: AppClient, tenant: str) -> None:
    url = f"/v1/admin/tenants/{tenant}/policy"
    cases = [
        ({"rate_limit": "lots"}, "validation_error"),  # the pattern of slowapi's syntax
        ({"rate_limit": "5/fortnight"}, "validation_error"),
        ({"pii_mode": "shred"}, "validation_error"),
        ({"max_messages": -1}, "validation_error"),
        ({"retention_by_kind": {"gossip": {"delete_after_days": 1}}}, "validation_error"),
        ({"surprise": 1}, "validation_error"),
    ]
    for body, code in cases:
        response = await client.put(url, json=body)
        assert (response.status_code, response.json()["error"]) == (422, code), body
    assert (await client.get(url)).json()["updated_at"] is None


async def test_only_admin_keys_read_or_change_policies(
    client: AppClient, db_engine: AsyncEngine
) -> None:
    mine, theirs = new_tenant(), new_tenant()
    my_key, their_key = await tenant_key(db_engine, mine), await tenant_key(db_engine, theirs)
    for key in (my_key, their_key):
        for tenant in (mine, theirs):
            url = f"/v1/admin/tenants/{tenant}/policy"
            read = await client.get(url, headers={"X-API-Key": key})
            write = await client.put(url, json={"max_messages": 1}, headers={"X-API-Key": key})
            assert (read.status_code, write.status_code) == (403, 403)
    assert (await client.get(f"/v1/admin/tenants/{mine}/policy")).json()["updated_at"] is None
    unauthenticated = await client.get(f"/v1/admin/tenants/{mine}/policy", headers={"X-API-Key": ""})
    assert unauthenticated.status_code == 401


async def test_a_change_applies_to_the_next_request_of_every_replica(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine, tenant: str
) -> None:
    settings = settings_factory()
    headers = {"X-API-Key": ADMIN_KEY}
    async with running_client(settings, headers) as first, running_client(settings, headers) as second:
        assert (await second.post("/v1/messages", json=message_body(tenant, "a@b.io"))).status_code == 200
        await set_policy(first, tenant, pii_mode="reject")
        refused = await second.post("/v1/messages", json=message_body(tenant, "mail c@d.io"))
        assert refused.status_code == 422
        await set_policy(first, tenant, pii_mode="off", max_messages=1)
        full = await second.post("/v1/messages", json=message_body(tenant, "mail c@d.io"))
        assert full.status_code == 409
        await set_policy(second, tenant)
        assert (await first.post("/v1/messages", json=message_body(tenant, "e@f.io"))).status_code == 200
    assert await count_rows(db_engine, tenant) == 2


async def test_services_other_domains_call(
    settings_factory: Callable[..., Settings], client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    settings = settings_factory(tenant_rate_limit="60/minute", quota_state_bytes=4096)
    async with create_sessionmaker(db_engine)() as session:
        assert await tenant_rate_limit(session, tenant, settings) == "60/minute"
        assert await state_quota_bytes(session, tenant, settings) == 4096
    await set_policy(client, tenant, rate_limit="", max_state_bytes=10)
    async with create_sessionmaker(db_engine)() as session:
        assert await tenant_rate_limit(session, tenant, settings) == ""
        assert await state_quota_bytes(session, tenant, settings) == 10


async def test_a_policy_binds_its_tenant_only(client: AppClient, db_engine: AsyncEngine) -> None:
    strict, lax = new_tenant(), new_tenant()
    strict_key, lax_key = await tenant_key(db_engine, strict), await tenant_key(db_engine, lax)
    await set_policy(client, strict, pii_mode="reject", max_messages=1)
    body = {"conversation_id": "c", "role": "user", "content": "mail me: ann@example.com"}
    refused = await client.post("/v1/messages", json=body, headers={"X-API-Key": strict_key})
    assert refused.status_code == 422
    for _ in range(2):
        stored = await client.post("/v1/messages", json=body, headers={"X-API-Key": lax_key})
        assert stored.status_code == 200
    # A key bound to one tenant cannot reach past its wall to another tenant's policy either.
    crossing = await client.post(
        "/v1/messages", json={**body, "tenant_id": lax}, headers={"X-API-Key": strict_key}
    )
    assert crossing.status_code == 403
    assert (await count_rows(db_engine, strict), await count_rows(db_engine, lax)) == (0, 2)
