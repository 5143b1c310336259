"""POST /v1/messages/{id}/usage: a memory's uses and their outcomes are counted, shown on reads
and search items, and change its rank; two tenant keys keep their walls."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from tests.fixtures.app import running_client
from tests.fixtures.messages import remember
from tests.fixtures.tenants import new_tenant, tenant_key


async def use(
    client: httpx.AsyncClient, message_id: str, status: int = 200, *, tenant: str | None = None,
    **body: Any,
) -> dict[str, Any]:
    params = {"tenant_id": tenant} if tenant is not None else {}
    response = await client.post(f"/v1/messages/{message_id}/usage", params=params, json=body)
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def search(client: httpx.AsyncClient, tenant: str, query: str) -> list[dict[str, Any]]:
    response = await client.post(
        "/v1/memory/search", json={"tenant_id": tenant, "query": query, "top_k": 10}
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_uses_and_outcomes_are_counted_and_shown_on_reads(
    client: httpx.AsyncClient, tenant: str
) -> None:
    message_id = await remember(client, tenant, "To reset the router, hold the button 10 s",
                                kind="procedure")
    fresh = (await client.get(f"/v1/messages/{message_id}", params={"tenant_id": tenant})).json()
    assert (fresh["use_count"], fresh["success_count"], fresh["failure_count"]) == (0, 0, 0)
    assert fresh["last_used_at"] is None

    first = await use(client, message_id, tenant=tenant, outcome="success")
    assert (first["use_count"], first["success_count"], first["failure_count"]) == (1, 1, 0)
    assert first["last_used_at"] is not None
    await use(client, message_id, tenant=tenant, outcome="failure")
    await use(client, message_id, tenant=tenant)  # a use without a verdict
    # No body at all is a use without a verdict too.
    bare = await client.post(f"/v1/messages/{message_id}/usage", params={"tenant_id": tenant})
    assert bare.status_code == 200, bare.text
    read = (await client.get(f"/v1/messages/{message_id}", params={"tenant_id": tenant})).json()
    assert (read["use_count"], read["success_count"], read["failure_count"]) == (4, 1, 1)
    assert read["last_used_at"] >= first["last_used_at"]
    assert read["content"] == fresh["content"]  # nothing else changes
    assert read["embedding_status"] == "ready"

    [item] = [i for i in await search(client, tenant, "reset the router") if i["message_id"] == message_id]
    assert (item["use_count"], item["success_count"], item["failure_count"]) == (4, 1, 1)
    assert item["last_used_at"] == read["last_used_at"]
    assert item["explanation"]["feedback"] == 1 - 0.5 * 1 / (1 + 1 + 2)

    listed = (await client.get("/v1/messages", params={"tenant_id": tenant})).json()["items"]
    assert listed[0]["use_count"] == 4


async def test_bad_usage_is_refused(client: httpx.AsyncClient, tenant: str) -> None:
    message_id = await remember(client, tenant, "a memory")
    bodies: list[Any] = [{"outcome": "maybe"}, {"outcome": 1}, {"verdict": "success"}, []]
    for body in bodies:
        response = await client.post(
            f"/v1/messages/{message_id}/usage", params={"tenant_id": tenant}, json=body
        )
        assert response.status_code == 422, (body, response.text)
    missing = await use(client, str(uuid.uuid4()), 404, tenant=tenant, outcome="success")
    assert missing["error"] == "message_not_found"
    read = (await client.get(f"/v1/messages/{message_id}", params={"tenant_id": tenant})).json()
    assert read["use_count"] == 0


async def test_a_procedure_that_keeps_failing_ranks_below_one_that_works(
    client: httpx.AsyncClient, tenant: str
) -> None:
    text = "To deploy, run make release then tag the commit"
    works = await remember(client, tenant, text, kind="procedure", importance_override=0.5)
    fails = await remember(client, tenant, text, kind="procedure", importance_override=0.5)
    # Equal in every signal, the newer one (fails) comes first.
    assert [i["message_id"] for i in await search(client, tenant, "how to deploy")][:2] == [fails, works]
    for _ in range(3):
        await use(client, fails, tenant=tenant, outcome="failure")
        await use(client, works, tenant=tenant, outcome="success")
    ranked = await search(client, tenant, "how to deploy")
    assert [i["message_id"] for i in ranked][:2] == [works, fails]
    by_id = {item["message_id"]: item for item in ranked}
    assert by_id[fails]["explanation"]["feedback"] == 1 - 0.5 * 3 / 5
    assert by_id[works]["explanation"]["feedback"] == 1.0
    assert by_id[fails]["score"] < by_id[works]["score"]


async def test_a_memory_in_use_stays_fresh(client: httpx.AsyncClient, tenant: str) -> None:
    text = "The office wifi password is on the fridge"
    month_ago = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    old = await remember(client, tenant, text, importance_override=0.5, created_at=month_ago)
    new = await remember(client, tenant, text, importance_override=0.4)
    before = {i["message_id"]: i for i in await search(client, tenant, "wifi password")}
    assert before[old]["recency"] < 0.1  # 720 h at a 168 h half-life
    assert before[new]["score"] > before[old]["score"]
    await use(client, old, tenant=tenant)
    after = await search(client, tenant, "wifi password")
    assert [item["message_id"] for item in after][:2] == [old, new]
    assert after[0]["recency"] > 0.99


async def test_recency_from_last_use_can_be_turned_off(
    settings_factory: Any, tenant: str
) -> None:
    settings: Settings = settings_factory(recency_from_last_use=False)
    async with running_client(settings, headers={"X-API-Key": "test-admin-key"}) as http:
        month_ago = (datetime.now(UTC) - timedelta(days=30)).isoformat()
        old = await remember(http, tenant, "the spare key is under the mat", created_at=month_ago)
        await use(http, old, tenant=tenant)
        [item] = await search(http, tenant, "spare key")
        assert item["last_used_at"] is not None
        assert item["recency"] < 0.1


async def test_each_tenant_key_records_uses_of_its_own_memories_only(
    settings_factory: Any, db_engine: AsyncEngine
) -> None:
    tenants = (new_tenant(), new_tenant())
    settings: Settings = settings_factory()
    ids: list[str] = []
    keys = [await tenant_key(db_engine, tenant) for tenant in tenants]
    for key in keys:
        async with running_client(settings, headers={"X-API-Key": key}) as http:
            response = await http.post("/v1/messages", json={
                "conversation_id": "c", "role": "user", "content": "shared words"})
            assert response.status_code == 200, response.text
            ids.append(response.json()["message_id"])
    for mine, other in ((0, 1), (1, 0)):
        async with running_client(settings, headers={"X-API-Key": keys[mine]}) as http:
            assert (await use(http, ids[mine], outcome="success"))["use_count"] == 1
            assert (await use(http, ids[other], 404, outcome="failure"))["error"] == "message_not_found"
            refused = await use(http, ids[mine], 403, tenant=tenants[other], outcome="failure")
            assert refused["error"] == "tenant_mismatch"
    # Each message counted only its own tenant's use.
    for mine in (0, 1):
        async with running_client(settings, headers={"X-API-Key": keys[mine]}) as http:
            read = (await http.get(f"/v1/messages/{ids[mine]}")).json()
            assert (read["use_count"], read["success_count"], read["failure_count"]) == (1, 1, 0)
