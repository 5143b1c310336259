"""Named locks in one app: grants, tokens, fencing numbers, expiry, waiting, walls and scopes."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.auth.service import create_api_key
from memory_layer.kit.db.engine import create_sessionmaker
from memory_layer.locks.service import count_held_locks, parse_token
from memory_layer.models.api_key import KeyScope
from tests.fixtures.app import AppClient, running_client
from tests.fixtures.tenants import new_tenant, tenant_key


async def acquire(
    client: httpx.AsyncClient, tenant: str | None, name: str = "job", ttl: float = 30,
    wait: float = 0, headers: dict[str, str] | None = None,
) -> httpx.Response:
    params = {"tenant_id": tenant} if tenant else {}
    return await client.post(
        f"/v1/locks/{name}", params=params, json={"ttl_seconds": ttl, "wait_seconds": wait},
        headers=headers,
    )


async def release(
    client: httpx.AsyncClient, tenant: str | None, token: str, name: str = "job",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    params = {"tenant_id": tenant} if tenant else {}
    return await client.delete(
        f"/v1/locks/{name}", params=params, headers={"Lock-Token": token, **(headers or {})}
    )


async def test_grant_release_and_fencing_numbers(client: AppClient, tenant: str) -> None:
    first = await acquire(client, tenant)
    assert first.status_code == 201, first.text
    grant = first.json()
    assert grant["fencing_token"] == 1
    assert grant["name"] == "job"

    held = await acquire(client, tenant)
    assert held.status_code == 423
    assert held.json()["error"] == "locked"

    # A wrong token changes nothing: still held.
    wrong = await release(client, tenant, "00000000-0000-4000-8000-000000000000")
    assert wrong.status_code == 409
    assert wrong.json()["error"] == "lock_not_held"
    garbage = await release(client, tenant, "not a token")
    assert garbage.status_code == 409
    assert (await acquire(client, tenant)).status_code == 423

    # WebDAV's spelling of the token is accepted.
    released = await release(client, tenant, f"<urn:uuid:{grant['token']}>")
    assert released.status_code == 204
    again = await release(client, tenant, grant["token"])
    assert again.status_code == 409  # stale: released already

    second = (await acquire(client, tenant)).json()
    assert second["fencing_token"] == 2
    assert second["token"] != grant["token"]
    # The stale token of the first grant cannot release the second.
    assert (await release(client, tenant, grant["token"])).status_code == 409
    assert (await acquire(client, tenant)).status_code == 423


async def test_extend_moves_the_lease_end_with_the_same_fencing_number(
    client: AppClient, tenant: str
) -> None:
    grant = (await acquire(client, tenant, ttl=5)).json()
    extended = await client.patch(
        "/v1/locks/job", params={"tenant_id": tenant}, json={"ttl_seconds": 600},
        headers={"Lock-Token": grant["token"]},
    )
    assert extended.status_code == 200, extended.text
    body = extended.json()
    assert body["fencing_token"] == grant["fencing_token"]
    assert datetime.fromisoformat(body["expires_at"]) > datetime.fromisoformat(grant["expires_at"])
    stale = await client.patch(
        "/v1/locks/job", params={"tenant_id": tenant}, json={"ttl_seconds": 600},
        headers={"Lock-Token": "00000000-0000-4000-8000-000000000000"},
    )
    assert stale.status_code == 409


async def test_expiry_frees_the_lock_and_voids_the_old_token(client: AppClient, tenant: str) -> None:
    grant = (await acquire(client, tenant, ttl=0.5)).json()
    assert (await acquire(client, tenant)).status_code == 423
    await asyncio.sleep(0.6)
    after = await acquire(client, tenant)
    assert after.status_code == 201, after.text
    assert after.json()["fencing_token"] == grant["fencing_token"] + 1
    # The holder that paused past its lease can neither release nor extend any more.
    assert (await release(client, tenant, grant["token"])).status_code == 409
    late = await client.patch(
        "/v1/locks/job", params={"tenant_id": tenant}, json={"ttl_seconds": 60},
        headers={"Lock-Token": grant["token"]},
    )
    assert late.status_code == 409


async def test_a_waiter_is_woken_by_the_lease_end(client: AppClient, tenant: str) -> None:
    holder = (await acquire(client, tenant, ttl=0.5)).json()
    waited = await acquire(client, tenant, wait=10)
    assert waited.status_code == 201, waited.text
    assert datetime.fromisoformat(waited.json()["acquired_at"]) >= datetime.fromisoformat(
        holder["expires_at"]
    )
    short = await acquire(client, tenant, wait=0.2)
    assert short.status_code == 423


async def test_waiting_acquirers_are_all_served(client: AppClient, tenant: str) -> None:
    holder = (await acquire(client, tenant, ttl=60)).json()
    served: list[dict[str, Any]] = []

    async def waiter() -> None:
        response = await acquire(client, tenant, ttl=60, wait=20)
        assert response.status_code == 201, response.text
        grant = response.json()
        served.append(grant)
        await asyncio.sleep(0.02)
        assert (await release(client, tenant, grant["token"])).status_code == 204

    waiters = [asyncio.create_task(waiter()) for _ in range(4)]
    await asyncio.sleep(0.3)
    assert not any(task.done() for task in waiters)  # all waiting on the held lock
    assert (await release(client, tenant, holder["token"])).status_code == 204
    await asyncio.wait_for(asyncio.gather(*waiters), timeout=20)
    fencing = [grant["fencing_token"] for grant in served]
    assert fencing == sorted(fencing)
    assert fencing == list(range(2, 6))


async def test_counts_held_locks(client: AppClient, tenant: str, db_engine: AsyncEngine) -> None:
    async with create_sessionmaker(db_engine)() as session:
        before = await count_held_locks(session)
    grant = (await acquire(client, tenant, name="counted")).json()
    async with create_sessionmaker(db_engine)() as session:
        assert await count_held_locks(session) >= before + 1
    await release(client, tenant, grant["token"], name="counted")


async def test_tenants_have_their_own_locks(settings_factory: Any, db_engine: AsyncEngine) -> None:
    first, second = new_tenant(), new_tenant()
    one = {"X-API-Key": await tenant_key(db_engine, first)}
    two = {"X-API-Key": await tenant_key(db_engine, second)}
    async with running_client(settings_factory()) as app:
        mine = await acquire(app, None, headers=one)
        assert mine.status_code == 201
        # The same name is another lock in another tenant.
        theirs = await acquire(app, None, headers=two)
        assert theirs.status_code == 201
        assert theirs.json()["fencing_token"] == 1
        # Another tenant's token does nothing here, and naming the other tenant is refused.
        assert (await release(app, None, mine.json()["token"], headers=two)).status_code == 409
        assert (await acquire(app, first, headers=two)).status_code == 403
        walled = await release(app, first, mine.json()["token"], headers=two)
        assert walled.status_code == 403
        assert (await acquire(app, None, headers=one)).status_code == 423


async def test_a_read_key_cannot_take_a_lock(
    settings_factory: Any, tenant: str, db_engine: AsyncEngine
) -> None:
    async with create_sessionmaker(db_engine).begin() as session:
        _, reader = await create_api_key(session, tenant, "reader", scopes=[KeyScope.read])
    async with running_client(settings_factory(), headers={"X-API-Key": reader}) as app:
        refused = await acquire(app, None)
        assert refused.status_code == 403
        assert refused.json()["error"] == "insufficient_scope"


def test_lock_tokens_parse_as_webdav_writes_them() -> None:
    token = "3f2b8c1e-9d4a-4c6b-8e2f-1a2b3c4d5e6f"
    assert str(parse_token(f"<urn:uuid:{token}>")) == token
    assert str(parse_token(token)) == token
    assert parse_token("opaquelocktoken:xyz") is None


async def test_without_a_listener_waiters_are_still_served(settings_factory: Any, tenant: str) -> None:
    """Behind a transaction pooler there is no LISTEN: a waiter re-checks every half second."""
    settings = settings_factory(db_transaction_pooler=True)
    async with running_client(settings, headers={"X-API-Key": "test-admin-key"}) as app:
        assert not app.app.state.wakeups.listening.is_set()
        holder = (await acquire(app, tenant, ttl=60)).json()
        waiting = asyncio.create_task(acquire(app, tenant, wait=10))
        await asyncio.sleep(0.2)
        assert (await release(app, tenant, holder["token"])).status_code == 204
        served = await asyncio.wait_for(waiting, timeout=10)
        assert served.status_code == 201, served.text
