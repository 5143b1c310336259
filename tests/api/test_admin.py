"""Health, readiness, metrics and retention."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from tests.fixtures.app import ADMIN_KEY, running_client


async def test_health_pings_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/admin/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": {"ok": True, "detail": None}}


async def test_readiness_checks_migrations_and_optionally_the_embedder(
    client: httpx.AsyncClient, settings_factory: Callable[..., Settings]
) -> None:
    plain = await client.get("/v1/admin/readiness")
    assert plain.status_code == 200
    checks = plain.json()["checks"]
    assert checks["migrations"]["ok"] is True
    assert checks["migrations"]["detail"]["current"] == checks["migrations"]["detail"]["head"]
    assert "embedder" not in checks
    async with running_client(settings_factory(health_embed_check_enabled=True)) as with_embed:
        response = await with_embed.get("/v1/admin/readiness")
    assert response.status_code == 200
    assert response.json()["checks"]["embedder"] == {
        "ok": True, "detail": {"model": "fake-hash-384", "dimensions": 384}
    }


async def test_readiness_fails_when_the_embedder_hangs(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(health_embed_check_enabled=True,
                                readiness_embed_timeout_seconds=0.05)
    async with running_client(settings) as client:
        embedder = client.app.state.embedder  # type: ignore[attr-defined]

        async def hang(text: str) -> list[float]:
            await asyncio.sleep(5)
            return []

        embedder.embed_query = hang
        response = await client.get("/v1/admin/readiness")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["embedder"]["ok"] is False
    assert "0.05" in body["checks"]["embedder"]["detail"]


async def test_metrics_count_requests_by_route_template(
    client: httpx.AsyncClient, tenant: str
) -> None:
    created = await client.post(
        "/v1/messages",
        json={"tenant_id": tenant, "conversation_id": "c", "role": "user", "content": "hi there"},
    )
    await client.get(f"/v1/messages/{created.json()['message_id']}", params={"tenant_id": tenant})
    await client.get("/v1/memory/search", params={"tenant_id": tenant, "query": "hi"})
    body = (await client.get("/metrics")).text
    assert 'memory_http_requests_total{method="POST",route="/v1/messages",status="200"} 1.0' in body
    assert 'route="/v1/messages/{message_id}",status="200"' in body
    histogram = 'memory_http_request_duration_seconds_bucket{le="0.005",method="GET"'
    assert f'{histogram},route="/v1/memory/search"}}' in body
    assert 'memory_messages_ingested_total{role="user"} 1.0' in body
    assert "memory_embedding_duration_seconds_count" in body


async def seed_for_retention(client: httpx.AsyncClient, tenant: str) -> dict[str, str]:
    old = (datetime.now(UTC) - timedelta(days=200)).isoformat()
    specs = {
        "old_unimportant": {"created_at": old, "importance_override": 0.1},
        "old_important": {"created_at": old, "importance_override": 0.9},
        "new_unimportant": {"importance_override": 0.1},
    }
    ids = {}
    for name, extra in specs.items():
        body = {"tenant_id": tenant, "conversation_id": "c", "role": "user",
                "content": f"retention sample {name}"} | extra
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


async def test_unknown_route_and_method_use_the_error_body(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nothing-here")
    wrong_method = await client.delete("/v1/memory/search")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"


async def test_readiness_pings_a_configured_redis(
    settings_factory: Callable[..., Settings],
) -> None:
    redis_url = os.environ.get("MEMORY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    async with running_client(settings_factory(redis_url=redis_url)) as client:
        up = await client.get("/v1/admin/readiness")
    assert up.status_code == 200, up.text
    assert up.json()["checks"]["redis"] == {"ok": True, "detail": None}

    async with running_client(settings_factory(redis_url="redis://127.0.0.1:1/0")) as client:
        down = await client.get("/v1/admin/readiness")
    assert down.status_code == 503
    assert down.json()["checks"]["redis"]["ok"] is False


async def test_scheduled_retention_runs_in_the_serving_process(
    settings_factory: Callable[..., Settings], tenant: str
) -> None:
    settings = settings_factory(retention_schedule_seconds=1, retention_tenants=[tenant])
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        ids = await seed_for_retention(client, tenant)
        archived_at = None
        for _ in range(100):  # wait for the schedule, at most about 10 s
            response = await client.get(
                f"/v1/messages/{ids['old_unimportant']}", params={"tenant_id": tenant}
            )
            archived_at = response.json()["archived_at"]
            if archived_at is not None:
                break
            await asyncio.sleep(0.1)
        kept = await client.get(f"/v1/messages/{ids['old_important']}", params={"tenant_id": tenant})
    assert archived_at is not None
    assert kept.json()["archived_at"] is None
