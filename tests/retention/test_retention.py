"""Retention: archive or delete old, unimportant messages, on request or on a schedule."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from tests.fixtures.app import ADMIN_KEY, running_client
from tests.support.waiting import wait_until


async def seed_for_retention(client: httpx.AsyncClient, tenant: str) -> dict[str, str]:
    old = (datetime.now(UTC) - timedelta(days=200)).isoformat()
    specs: dict[str, dict[str, str | float]] = {
        "old_unimportant": {"created_at": old, "importance_override": 0.1},
        "old_important": {"created_at": old, "importance_override": 0.9},
        "new_unimportant": {"importance_override": 0.1},
    }
    ids: dict[str, str] = {}
    for name, extra in specs.items():
        body: dict[str, str | float] = {
            "tenant_id": tenant, "conversation_id": "c", "role": "user",
            "content": f"retention sample {name}", **extra,
        }
        response = await client.post("/v1/messages", json=body)
        assert response.status_code == 200
        ids[name] = response.json()["message_id"]
    return ids


async def search_ids(client: httpx.AsyncClient, tenant: str) -> set[str]:
    response = await client.post(
        "/v1/memory/search", json={"tenant_id": tenant, "query": "retention sample", "top_k": 50}
    )
    return {item["message_id"] for item in response.json()["items"]}


async def test_retention_archives_old_unimportant_messages_once(
    client: httpx.AsyncClient, tenant: str
) -> None:
    ids = await seed_for_retention(client, tenant)
    body = {"tenant_id": tenant, "older_than_days": 90, "importance_below": 0.5}

    dry = await client.post("/v1/admin/retention/run", json=body | {"dry_run": True})
    assert dry.status_code == 200
    assert dry.json()["matched"] == 1
    assert dry.json()["archived"] == 0
    assert await search_ids(client, tenant) == set(ids.values())

    first = await client.post("/v1/admin/retention/run", json=body)
    second = await client.post("/v1/admin/retention/run", json=body)
    assert first.json()["archived"] == 1
    assert first.json()["action"] == "archive"
    assert second.json()["archived"] == 0
    assert await search_ids(client, tenant) == {ids["old_important"], ids["new_unimportant"]}
    archived = await client.get(
        f"/v1/messages/{ids['old_unimportant']}", params={"tenant_id": tenant}
    )
    assert archived.json()["archived_at"] is not None


async def test_retention_delete_removes_rows(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine
) -> None:
    ids = await seed_for_retention(client, tenant)
    response = await client.post(
        "/v1/admin/retention/run",
        json={"tenant_id": tenant, "older_than_days": 90, "importance_below": 0.5,
              "action": "delete"},
    )
    assert response.json()["deleted"] == 1
    gone = await client.get(f"/v1/messages/{ids['old_unimportant']}", params={"tenant_id": tenant})
    assert gone.status_code == 404
    async with db_engine.connect() as connection:
        left = (await connection.execute(
            text("SELECT count(*) FROM messages WHERE tenant_id = :t"), {"t": tenant}
        )).scalar_one()
    assert left == 2


async def test_retention_only_touches_the_named_tenant(
    client: httpx.AsyncClient, tenant: str
) -> None:
    other = f"{tenant}-x"
    await seed_for_retention(client, tenant)
    other_ids = await seed_for_retention(client, other)
    await client.post(
        "/v1/admin/retention/run",
        json={"tenant_id": tenant, "older_than_days": 90, "importance_below": 0.5},
    )
    assert await search_ids(client, other) == set(other_ids.values())


async def test_concurrent_retention_runs_never_overlap(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await seed_for_retention(client, tenant)
    body = {"tenant_id": tenant, "older_than_days": 90, "importance_below": 0.5}
    async with db_engine.connect() as holder:
        await holder.execute(text("SELECT pg_advisory_lock(hashtext('memory-layer:retention'))"))
        blocked = await client.post("/v1/admin/retention/run", json=body)
        await holder.execute(text("SELECT pg_advisory_unlock(hashtext('memory-layer:retention'))"))
        await holder.commit()
    assert blocked.status_code == 409
    assert blocked.json()["error"] == "retention_in_progress"

    results = await asyncio.gather(
        *(client.post("/v1/admin/retention/run", json=body) for _ in range(4))
    )
    assert {r.status_code for r in results} <= {200, 409}
    assert sum(r.json().get("archived", 0) for r in results if r.status_code == 200) == 1


async def test_scheduled_retention_runs_in_the_serving_process(
    settings_factory: Callable[..., Settings], tenant: str
) -> None:
    settings = settings_factory(retention_schedule_seconds=1, retention_tenants=[tenant])
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        ids = await seed_for_retention(client, tenant)

        async def archived() -> bool:
            response = await client.get(
                f"/v1/messages/{ids['old_unimportant']}", params={"tenant_id": tenant}
            )
            return response.json()["archived_at"] is not None

        # The schedule runs every second.
        await wait_until(archived, interval=0.1, message="the scheduled run never archived")
        kept = await client.get(f"/v1/messages/{ids['old_important']}", params={"tenant_id": tenant})
        fresh = await client.get(f"/v1/messages/{ids['new_unimportant']}", params={"tenant_id": tenant})
    assert kept.json()["archived_at"] is None
    assert fresh.json()["archived_at"] is None


async def test_retention_tenants_star_means_every_tenant(
    settings_factory: Callable[..., Settings], tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = f"{tenant}-y"
    monkeypatch.setenv("MEMORY_RETENTION_TENANTS", "*")
    settings = Settings(_env_file=None, **settings_factory().model_dump(exclude={"retention_tenants"}))
    assert settings.retention_tenants == ["*"]
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        await seed_for_retention(client, tenant)
        await seed_for_retention(client, other)
        # A dry run: the test database is shared, so nothing of other tests' rows is changed.
        response = await client.post(
            "/v1/admin/retention/run",
            json={"older_than_days": 90, "importance_below": 0.5, "dry_run": True},
        )
        assert response.status_code == 200, response.text
        assert response.json()["tenants"] is None
        # `*` taken as a tenant's name would match nothing; every tenant's old row counts.
        assert response.json()["matched"] >= 2
        named = await client.post(
            "/v1/admin/retention/run",
            json={"tenant_id": other, "older_than_days": 90, "importance_below": 0.5, "dry_run": True},
        )
        assert named.json()["matched"] == 1
