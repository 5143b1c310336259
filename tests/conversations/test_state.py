"""Working memory: a JSON document per conversation under optimistic concurrency, merge patches,
expiry, size limit, tenant walls, and erasure."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from tests.fixtures.app import AppClient, running_client
from tests.fixtures.messages import remember
from tests.fixtures.tenants import new_tenant, tenant_key
from tests.policies.helpers import set_policy

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


def url(conversation: str = "c1") -> str:
    return f"/v1/conversations/{conversation}/state"


async def put(
    client: httpx.AsyncClient, tenant: str | None, state: dict[str, Any], conversation: str = "c1",
    headers: dict[str, str] | None = None, **extra: Any,
) -> httpx.Response:
    params = {"tenant_id": tenant} if tenant else {}
    return await client.put(
        url(conversation), params=params, json={"state": state, **extra}, headers=headers
    )


async def test_create_read_replace_with_versions_and_etags(client: AppClient, tenant: str) -> None:
    created = await put(client, tenant, {"goal": "book a table"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["version"] == 1
    assert body["state"] == {"goal": "book a table"}
    assert created.headers["ETag"] == body["etag"]

    read = await client.get(url(), params={"tenant_id": tenant})
    assert read.status_code == 200
    assert read.headers["ETag"] == created.headers["ETag"]

    replaced = await put(client, tenant, {"goal": "pay"}, headers={"If-Match": body["etag"]})
    assert replaced.status_code == 200
    assert replaced.json()["version"] == 2
    stale = await put(client, tenant, {"goal": "lost"}, headers={"If-Match": body["etag"]})
    assert stale.status_code == 412
    assert stale.json()["error"] == "precondition_failed"
    only_new = await put(client, tenant, {"goal": "lost"}, headers={"If-None-Match": "*"})
    assert only_new.status_code == 412
    after = (await client.get(url(), params={"tenant_id": tenant})).json()
    assert after["state"] == {"goal": "pay"}
    assert after["version"] == 2

    fresh = await put(client, tenant, {"a": 1}, conversation="c2", headers={"If-None-Match": "*"})
    assert fresh.status_code == 201
    unknown = await client.get(url("c3"), params={"tenant_id": tenant})
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "state_not_found"
    blind = await put(client, tenant, {"a": 1}, conversation="c3", headers={"If-Match": '"1-0"'})
    assert blind.status_code == 412


async def test_merge_patch(client: AppClient, tenant: str) -> None:
    first = await put(client, tenant, {"goal": "book", "slots": {"people": 4, "time": "19:00"}})
    patched = await client.patch(
        url(),
        params={"tenant_id": tenant},
        json={"slots": {"time": None, "day": "friday"}, "plan": ["call"]},
        headers=MERGE_PATCH,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["state"] == {
        "goal": "book", "slots": {"people": 4, "day": "friday"}, "plan": ["call"]
    }
    assert patched.json()["version"] == 2
    stale = await client.patch(
        url(), params={"tenant_id": tenant}, json={"goal": "x"},
        headers={**MERGE_PATCH, "If-Match": first.headers["ETag"]},
    )
    assert stale.status_code == 412
    as_json = await client.patch(url(), params={"tenant_id": tenant}, json={"goal": None})
    assert as_json.status_code == 200
    assert "goal" not in as_json.json()["state"]
    wrong_type = await client.patch(
        url(), params={"tenant_id": tenant}, content=b"goal=x", headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    not_json = await client.patch(
        url(), params={"tenant_id": tenant}, content=b"{", headers=MERGE_PATCH
    )
    assert not_json.status_code == 422
    not_object = await client.patch(
        url(), params={"tenant_id": tenant}, content=b"[1]", headers=MERGE_PATCH
    )
    assert not_object.status_code == 422
    missing = await client.patch(
        url("nowhere"), params={"tenant_id": tenant}, json={"a": 1}, headers=MERGE_PATCH
    )
    assert missing.status_code == 404
    final = (await client.get(url(), params={"tenant_id": tenant})).json()
    assert final["version"] == 3


async def test_size_limit_is_413_and_changes_nothing(
    settings_factory: Callable[..., Settings], tenant: str
) -> None:
    from tests.fixtures.app import ADMIN_KEY

    settings = settings_factory(max_state_bytes=100)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        big = await put(client, tenant, {"notes": "x" * 200})
        assert big.status_code == 413
        assert big.json()["error"] == "state_too_large"
        assert big.json()["detail"]["limit_bytes"] == 100
        assert (await put(client, tenant, {"notes": "short"})).status_code == 201
        grown = await client.patch(
            url(), params={"tenant_id": tenant}, json={"more": "y" * 200}, headers=MERGE_PATCH
        )
        assert grown.status_code == 413
        kept = (await client.get(url(), params={"tenant_id": tenant})).json()
        assert kept["state"] == {"notes": "short"}
        assert kept["version"] == 1
        nul = await put(client, tenant, {"notes": "a\u0000b"})
        assert nul.status_code == 422


async def expire(engine: AsyncEngine, tenant: str, conversation: str = "c1") -> None:
    """Move the state's expiry into the past (as if its TTL had run out)."""
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE conversation_states SET expires_at = now() - interval '1 second' "
                "WHERE tenant_id = :t AND conversation_id = :c"
            ),
            {"t": tenant, "c": conversation},
        )


async def test_expired_state_is_gone_at_once_and_retention_frees_it(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    created = await put(client, tenant, {"step": 1}, ttl_seconds=3600)
    assert created.json()["expires_at"] is not None
    renewed = await client.patch(
        url(), params={"tenant_id": tenant, "ttl_seconds": 60}, json={"step": 2}
    )
    assert renewed.json()["expires_at"] < created.json()["expires_at"]
    await expire(db_engine, tenant)

    assert (await client.get(url(), params={"tenant_id": tenant})).status_code == 404
    patch = await client.patch(url(), params={"tenant_id": tenant}, json={"step": 3})
    assert patch.status_code == 404
    stale = await put(client, tenant, {"step": 3}, headers={"If-Match": renewed.headers["ETag"]})
    assert stale.status_code == 412
    again = await put(client, tenant, {"step": 1}, headers={"If-None-Match": "*"})
    assert again.status_code == 201
    assert again.json()["version"] == 1
    # A state created again never answers to its predecessor's ETag.
    assert again.headers["ETag"] != created.headers["ETag"]
    assert again.json()["expires_at"] is None

    await put(client, tenant, {"old": True}, conversation="c2", ttl_seconds=60)
    await expire(db_engine, tenant, "c2")
    ran = await client.post("/v1/admin/retention/run", json={"tenant_id": tenant})
    assert ran.status_code == 200
    async with db_engine.connect() as connection:
        left = await connection.execute(
            text("SELECT conversation_id FROM conversation_states WHERE tenant_id = :t"),
            {"t": tenant},
        )
        assert [row[0] for row in left] == ["c1"]


async def test_fifty_concurrent_increments_lose_nothing(client: AppClient, tenant: str) -> None:
    await put(client, tenant, {"counter": 0})
    conflicts = 0

    async def increment() -> None:
        nonlocal conflicts
        for attempt in itertools.count():
            if attempt:  # what a real client does after a 412: back off a random while
                await asyncio.sleep(random.uniform(0, min(0.01 * 2**attempt, 0.3)))
            read = await client.get(url(), params={"tenant_id": tenant})
            value = read.json()["state"]["counter"]
            write = await put(
                client, tenant, {"counter": value + 1}, headers={"If-Match": read.headers["ETag"]}
            )
            if write.status_code == 200:
                return
            assert write.status_code == 412, write.text
            conflicts += 1

    await asyncio.gather(*(increment() for _ in range(50)))
    final = (await client.get(url(), params={"tenant_id": tenant})).json()
    assert final["state"] == {"counter": 50}
    assert final["version"] == 51
    assert conflicts > 0  # the clients did collide; the ETag is what kept every increment


async def test_states_are_walled_by_tenant(client: AppClient, db_engine: AsyncEngine) -> None:
    mine, theirs = new_tenant(), new_tenant()
    my_key = {"X-API-Key": await tenant_key(db_engine, mine)}
    their_key = {"X-API-Key": await tenant_key(db_engine, theirs)}
    assert (await put(client, None, {"owner": "me"}, headers=my_key)).status_code == 201

    assert (await client.get(url(), headers=their_key)).status_code == 404
    for response in (
        await client.get(url(), params={"tenant_id": mine}, headers=their_key),
        await put(client, mine, {"owner": "them"}, headers=their_key),
        await client.patch(url(), params={"tenant_id": mine}, json={"x": 1}, headers=their_key),
        await client.delete(url(), params={"tenant_id": mine}, headers=their_key),
    ):
        assert response.status_code == 403
        assert response.json()["error"] == "tenant_mismatch"
    assert (await put(client, None, {"owner": "them"}, headers=their_key)).status_code == 201
    mine_now = await client.get(url(), headers=my_key)
    assert mine_now.json()["state"] == {"owner": "me"}
    assert mine_now.json()["version"] == 1

    reader = await client.post(
        "/v1/admin/keys", json={"name": "r", "tenant_id": mine, "scopes": ["read"]}
    )
    read_only = {"X-API-Key": reader.json()["api_key"]}
    assert (await client.get(url(), headers=read_only)).status_code == 200
    refused = await put(client, None, {"owner": "reader"}, headers=read_only)
    assert refused.status_code == 403
    assert refused.json()["error"] == "insufficient_scope"


async def test_delete_state_and_conversation(client: AppClient, tenant: str) -> None:
    created = await put(client, tenant, {"a": 1})
    await put(client, tenant, {"a": 2})
    stale = await client.delete(
        url(), params={"tenant_id": tenant}, headers={"If-Match": created.headers["ETag"]}
    )
    assert stale.status_code == 412
    deleted = await client.delete(url(), params={"tenant_id": tenant})
    assert deleted.status_code == 204
    assert (await client.delete(url(), params={"tenant_id": tenant})).status_code == 404

    await remember(client, tenant, "hello", conversation_id="c5")
    await put(client, tenant, {"a": 1}, conversation="c5")
    assert (
        await client.delete("/v1/conversations/c5", params={"tenant_id": tenant})
    ).status_code == 200
    assert (await client.get(url("c5"), params={"tenant_id": tenant})).status_code == 404


async def test_erasing_a_user_erases_their_conversations_states(
    client: AppClient, tenant: str
) -> None:
    await put(client, tenant, {"about": "eve"}, conversation="tagged", user_id="eve")
    await remember(client, tenant, "I am Eve", conversation_id="talked", user_id="eve")
    await put(client, tenant, {"about": "eve too"}, conversation="talked")
    await remember(client, tenant, "I am Bob", conversation_id="bobs", user_id="bob")
    await put(client, tenant, {"about": "bob"}, conversation="bobs")
    await put(client, tenant, {"about": "bob"}, conversation="bob-tagged", user_id="bob")

    erased = await client.delete("/v1/users/eve", params={"tenant_id": tenant})
    assert erased.status_code == 200
    assert erased.json()["counts"]["conversation_states"] == 2
    for conversation, status in (("tagged", 404), ("talked", 404), ("bobs", 200), ("bob-tagged", 200)):
        response = await client.get(url(conversation), params={"tenant_id": tenant})
        assert response.status_code == status, conversation


async def test_the_tenants_state_quota_is_409_quota_exceeded_and_changes_nothing(
    client: AppClient, tenant: str
) -> None:
    assert (await put(client, tenant, {"note": "small"})).status_code == 201
    await set_policy(client, tenant, max_state_bytes=64)
    big = {"note": "x" * 100}
    refused = await put(client, tenant, big)
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["error"] == "quota_exceeded"
    assert body["detail"]["quota"] == "conversation_state_bytes"
    assert body["detail"]["limit"] == 64
    patched = await client.patch(
        url(), params={"tenant_id": tenant}, json=big, headers=MERGE_PATCH
    )
    assert patched.status_code == 409
    kept = (await client.get(url(), params={"tenant_id": tenant})).json()
    assert kept["state"] == {"note": "small"}
    assert kept["version"] == 1
