"""GET /v1/messages/{id}/related: the nearest messages to a stored one, by its own vector."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from tests.fixtures.app import running_client
from tests.fixtures.messages import remember
from tests.fixtures.rows import at, insert_rows, message_row
from tests.fixtures.tenants import new_tenant, tenant_key


async def related(
    client: httpx.AsyncClient, message_id: str, status: int = 200, **params: Any
) -> dict[str, Any]:
    response = await client.get(f"/v1/messages/{message_id}/related", params=params)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_nearest_messages_come_first_and_the_message_itself_never(
    client: httpx.AsyncClient, tenant: str
) -> None:
    source = await remember(client, tenant, "I love Python programming")
    close = await remember(client, tenant, "Python programming is my hobby", conversation_id="c2")
    fact = await remember(client, tenant, "Ana writes Python programs", kind="fact")
    far = await remember(client, tenant, "The weather in Lisbon was sunny")
    body = await related(client, source, tenant_id=tenant, top_k=10)
    found = [item["message_id"] for item in body["items"]]
    assert source not in found
    assert set(found) == {close, fact, far}
    assert found[0] == close
    assert found[-1] == far
    assert body["total"] == 3
    assert body["embedding_model"] == "fake-hash-384"
    first = body["items"][0]
    assert first["similarity"] > body["items"][-1]["similarity"]
    assert first["score_parts"]["relevance"] > 0
    # The filters of search: one kind, one conversation, how many.
    facts = await related(client, source, tenant_id=tenant, kind="fact")
    assert [item["message_id"] for item in facts["items"]] == [fact]
    in_c2 = await related(client, source, tenant_id=tenant, conversation_id="c2")
    assert [item["message_id"] for item in in_c2["items"]] == [close]
    assert len((await related(client, source, tenant_id=tenant, top_k=1))["items"]) == 1
    # From another message, the first one is a neighbour like any other.
    from_close = await related(client, close, tenant_id=tenant, top_k=1)
    assert [item["message_id"] for item in from_close["items"]] == [source]


async def test_a_message_without_its_vector_is_409_and_an_unknown_one_404(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    [pending] = await insert_rows(db_engine, [message_row(tenant, "c", at(1))])
    body = await related(client, str(pending), 409, tenant_id=tenant)
    assert body["error"] == "embedding_not_ready"
    assert body["detail"]["embedding_status"] == "pending"
    missing = await related(client, str(uuid.uuid4()), 404, tenant_id=tenant)
    assert missing["error"] == "message_not_found"
    assert (await client.get("/v1/messages/not-a-uuid/related",
                             params={"tenant_id": tenant})).status_code == 422
    assert (await client.get(f"/v1/messages/{pending}/related",
                             params={"tenant_id": tenant, "top_k": 0})).status_code == 422


async def test_each_tenant_key_relates_only_its_own_messages(
    settings_factory: Any, db_engine: AsyncEngine
) -> None:
    tenants = (new_tenant(), new_tenant())
    settings: Settings = settings_factory()
    ids: list[list[str]] = []
    for tenant in tenants:
        key = await tenant_key(db_engine, tenant)
        async with running_client(settings, headers={"X-API-Key": key}) as http:
            written: list[str] = []
            for content in ("apple pie recipe", "apple crumble recipe", "river stones"):
                response = await http.post("/v1/messages", json={
                    "conversation_id": "shared", "role": "user", "content": content})
                assert response.status_code == 200, response.text
                written.append(response.json()["message_id"])
            ids.append(written)
    for mine, other in ((0, 1), (1, 0)):
        key = await tenant_key(db_engine, tenants[mine])
        async with running_client(settings, headers={"X-API-Key": key}) as http:
            body = await related(http, ids[mine][0], top_k=10)
            assert {item["message_id"] for item in body["items"]} == set(ids[mine][1:])
            # The other tenant's message is not found, and naming the other tenant is refused.
            assert (await related(http, ids[other][0], 404))["error"] == "message_not_found"
            refused = await related(http, ids[mine][0], 403, tenant_id=tenants[other])
            assert refused["error"] == "tenant_mismatch"
