"""Runs and task outputs: lifecycle, idempotent outputs, listings, tenant walls, quotas,
retention."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from tests.fixtures.app import AppClient, running_client
from tests.fixtures.tenants import new_tenant, tenant_key
from tests.policies.helpers import set_policy


async def create(client: httpx.AsyncClient, tenant: str | None, **body: Any) -> httpx.Response:
    payload = {"flow_name": "digest", **body}
    if tenant is not None:
        payload["tenant_id"] = tenant
    return await client.post("/v1/runs", json=payload)


def output_url(run_id: str, task: str = "extract") -> str:
    return f"/v1/runs/{run_id}/tasks/{task}/output"


async def test_lifecycle_sets_times_and_refuses_leaving_a_final_status(
    client: AppClient, tenant: str
) -> None:
    created = await create(client, tenant, parameters={"day": "2026-12-07"})
    assert created.status_code == 201, created.text
    run = created.json()
    assert run["status"] == "pending"
    assert run["started_at"] is None
    assert run["finished_at"] is None
    assert run["parameters"] == {"day": "2026-12-07"}
    run_url = f"/v1/runs/{run['run_id']}"
    scope = {"tenant_id": tenant}

    running = await client.patch(run_url, params=scope, json={"status": "running"})
    assert running.status_code == 200, running.text
    assert running.json()["started_at"] is not None
    assert running.json()["finished_at"] is None

    done = await client.patch(run_url, params=scope, json={"status": "completed"})
    assert done.status_code == 200
    finished = done.json()
    assert finished["finished_at"] is not None
    assert finished["finished_at"] >= finished["started_at"]
    assert finished["started_at"] == running.json()["started_at"]

    again = await client.patch(run_url, params=scope, json={"status": "completed"})
    assert again.status_code == 200
    assert again.json() == finished
    back = await client.patch(run_url, params=scope, json={"status": "running"})
    assert back.status_code == 409
    assert back.json()["error"] == "invalid_transition"
    assert back.json()["detail"]["allowed"] == []
    read = await client.get(run_url, params=scope)
    assert read.json() == finished

    failed_at_once = await create(client, tenant, status="failed")
    assert failed_at_once.status_code == 201
    assert failed_at_once.json()["finished_at"] is not None
    early_finish = await create(client, tenant, status="running", finished_at="2026-01-01T00:00:00Z")
    assert early_finish.status_code == 422
    assert early_finish.json()["error"] == "invalid_run_times"
    backwards = await create(
        client, tenant, status="completed", started_at="2026-01-02T00:00:00Z",
        finished_at="2026-01-01T00:00:00Z",
    )
    assert backwards.status_code == 422
    bad_status = await create(client, tenant, status="paused")
    assert bad_status.status_code == 422


async def test_task_outputs_are_idempotent_and_frozen_once_the_run_is_final(
    settings_factory: Callable[..., Settings], tenant: str
) -> None:
    settings = settings_factory(max_task_output_bytes=200)
    async with running_client(settings, headers={"X-API-Key": "test-admin-key"}) as client:
        run_id = (await create(client, tenant)).json()["run_id"]
        scope = {"tenant_id": tenant}
        url = output_url(run_id)
        missing = await client.get(url, params=scope)
        assert missing.status_code == 404
        assert missing.json()["error"] == "output_not_found"

        first = await client.put(url, params=scope, json={"output": {"rows": [1, 2]}})
        assert first.status_code == 201, first.text
        same = await client.put(url, params=scope, json={"output": {"rows": [1, 2]}})
        assert same.status_code == 200
        assert same.json() == first.json()
        replaced = await client.put(url, params=scope, json={"output": [3]})
        assert replaced.status_code == 200
        assert replaced.json()["output"] == [3]
        assert replaced.json()["output_bytes"] == 3
        read = await client.get(url, params=scope)
        assert read.status_code == 200
        assert read.json()["output"] == [3]

        too_large = await client.put(url, params=scope, json={"output": "x" * 300})
        assert too_large.status_code == 413
        assert too_large.json()["error"] == "output_too_large"
        nul = await client.put(url, params=scope, json={"output": {"a": "\u0000"}})
        assert nul.status_code == 422

        await client.patch(f"/v1/runs/{run_id}", params=scope, json={"status": "cancelled"})
        retried = await client.put(url, params=scope, json={"output": [3]})
        assert retried.status_code == 200
        frozen = await client.put(url, params=scope, json={"output": [4]})
        assert frozen.status_code == 409
        assert frozen.json()["error"] == "run_finished"
        late = await client.put(output_url(run_id, "load"), params=scope, json={"output": 1})
        assert late.status_code == 409

        unknown = "01890000-0000-7000-8000-000000000000"
        no_run = await client.put(output_url(unknown), params=scope, json={"output": 1})
        assert no_run.status_code == 404
        assert no_run.json()["error"] == "run_not_found"
        assert (await client.get(output_url(unknown), params=scope)).json()["error"] == (
            "run_not_found"
        )

        deleted = await client.delete(f"/v1/runs/{run_id}", params=scope)
        assert deleted.status_code == 204
        assert (await client.get(url, params=scope)).status_code == 404
        assert (await client.delete(f"/v1/runs/{run_id}", params=scope)).status_code == 404


async def test_listing_filters_and_pages(client: AppClient, tenant: str) -> None:
    ids = []
    for index in range(5):
        flow = "digest" if index % 2 == 0 else "ingest"
        status = "completed" if index < 2 else "pending"
        response = await create(client, tenant, flow_name=flow, status=status)
        ids.append(response.json()["run_id"])
    scope = {"tenant_id": tenant}

    pages: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {**scope, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/runs", params=params)).json()
        pages.extend(item["run_id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == list(reversed(ids))

    oldest_first = await client.get("/v1/runs", params={**scope, "order": "asc"})
    assert [item["run_id"] for item in oldest_first.json()["items"]] == ids
    digests = await client.get("/v1/runs", params={**scope, "flow_name": "digest"})
    assert [item["run_id"] for item in digests.json()["items"]] == [ids[4], ids[2], ids[0]]
    done = await client.get("/v1/runs", params={**scope, "status": "completed"})
    assert [item["run_id"] for item in done.json()["items"]] == [ids[1], ids[0]]
    both = await client.get(
        "/v1/runs", params={**scope, "status": "pending", "flow_name": "ingest"}
    )
    assert [item["run_id"] for item in both.json()["items"]] == [ids[3]]
    third = (await client.get(f"/v1/runs/{ids[2]}", params=scope)).json()["created_at"]
    since = await client.get("/v1/runs", params={**scope, "since": third, "order": "asc"})
    assert [item["run_id"] for item in since.json()["items"]] == ids[2:]
    until = await client.get("/v1/runs", params={**scope, "until": third, "order": "asc"})
    assert [item["run_id"] for item in until.json()["items"]] == ids[:2]

    first = (await client.get("/v1/runs", params={**scope, "limit": 1})).json()
    other_filter = await client.get(
        "/v1/runs", params={**scope, "flow_name": "digest", "cursor": first["next_cursor"]}
    )
    assert other_filter.status_code == 400
    assert other_filter.json()["error"] == "invalid_cursor"


async def test_tenant_walls(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    first, second = new_tenant(), new_tenant()
    first_key, second_key = await tenant_key(db_engine, first), await tenant_key(db_engine, second)
    async with running_client(settings_factory()) as client:
        own = {"X-API-Key": first_key}
        other = {"X-API-Key": second_key}
        created = await client.post("/v1/runs", json={"flow_name": "digest"}, headers=own)
        assert created.status_code == 201, created.text
        run_id = created.json()["run_id"]
        put = await client.put(output_url(run_id), json={"output": 1}, headers=own)
        assert put.status_code == 201

        named = await client.post(
            "/v1/runs", json={"flow_name": "x", "tenant_id": first}, headers=other
        )
        assert named.status_code == 403
        assert (await client.get(f"/v1/runs/{run_id}", headers=other)).status_code == 404
        assert (
            await client.patch(f"/v1/runs/{run_id}", json={"status": "running"}, headers=other)
        ).status_code == 404
        assert (await client.get(output_url(run_id), headers=other)).status_code == 404
        assert (
            await client.put(output_url(run_id), json={"output": 2}, headers=other)
        ).status_code == 404
        assert (await client.delete(f"/v1/runs/{run_id}", headers=other)).status_code == 404
        assert (await client.get("/v1/runs", headers=other)).json()["items"] == []
        listing = (await client.get("/v1/runs", headers=own)).json()["items"]
        assert [item["run_id"] for item in listing] == [run_id]
        assert (await client.get(output_url(run_id), headers=own)).json()["output"] == 1


async def test_quotas_count_runs_and_their_bytes(client: AppClient, tenant: str) -> None:
    await set_policy(client, tenant, max_messages=2)
    assert (await create(client, tenant)).status_code == 201
    assert (await create(client, tenant)).status_code == 201
    refused = await create(client, tenant)
    assert refused.status_code == 409
    assert refused.json()["error"] == "quota_exceeded"
    assert refused.json()["detail"]["quota"] == "max_messages (runs)"

    other = new_tenant()
    await set_policy(client, other, max_content_bytes=40)
    run_id = (await create(client, other, parameters={"a": 1})).json()["run_id"]  # 7 bytes
    scope = {"tenant_id": other}
    fits = await client.put(output_url(run_id), params=scope, json={"output": "y" * 20})  # 22
    assert fits.status_code == 201
    over = await client.put(output_url(run_id, "two"), params=scope, json={"output": "z" * 20})
    assert over.status_code == 409
    assert over.json()["detail"]["quota"] == "max_content_bytes (runs)"
    # Replacing an output counts only the difference.
    smaller = await client.put(output_url(run_id), params=scope, json={"output": "y" * 30})
    assert smaller.status_code == 200


async def test_retention_deletes_old_runs_with_their_outputs(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await set_policy(client, tenant, delete_after_days=1)
    old = (await create(client, tenant)).json()["run_id"]
    new = (await create(client, tenant)).json()["run_id"]
    scope = {"tenant_id": tenant}
    await client.put(output_url(old), params=scope, json={"output": {"kept": False}})
    async with db_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE runs SET created_at = now() - interval '2 days' "
                "WHERE tenant_id = :tenant AND id = :id"
            ),
            {"tenant": tenant, "id": old},
        )
    body = {"tenant_id": tenant}
    dry = await client.post("/v1/admin/retention/run", json=body | {"dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json()["runs_deleted"] == 1
    assert (await client.get(f"/v1/runs/{old}", params=scope)).status_code == 200
    ran = await client.post("/v1/admin/retention/run", json=body)
    assert ran.json()["runs_deleted"] == 1
    assert (await client.get(f"/v1/runs/{old}", params=scope)).status_code == 404
    assert (await client.get(f"/v1/runs/{new}", params=scope)).status_code == 200
    async with db_engine.connect() as connection:
        outputs = await connection.execute(
            text("SELECT count(*) FROM run_task_outputs WHERE tenant_id = :tenant"),
            {"tenant": tenant},
        )
        assert outputs.scalar_one() == 0
