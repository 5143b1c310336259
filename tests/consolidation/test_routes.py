"""The consolidation routes behind the tenant wall, with their scopes."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.auth.service import create_api_key
from memory_layer.kit.db.engine import create_sessionmaker
from memory_layer.models.api_key import KeyScope
from tests.consolidation.support import say, worker_of
from tests.fixtures.app import AppClient
from tests.fixtures.tenants import new_tenant, tenant_key


def key(value: str) -> dict[str, str]:
    return {"X-API-Key": value}


async def test_two_tenants_never_see_each_others_facts_or_summaries(
    client: AppClient, db_engine: AsyncEngine
) -> None:
    tenants = (new_tenant(), new_tenant())
    keys = [await tenant_key(db_engine, tenant) for tenant in tenants]
    await say(client, tenants[0], "I live in Porto.", headers=key(keys[0]))
    await say(client, tenants[1], "I live in Oslo.", headers=key(keys[1]))
    for tenant in tenants:
        await worker_of(client).drain(tenant)

    for mine, other in ((0, 1), (1, 0)):
        own = await client.get("/v1/users/ana/facts", headers=key(keys[mine]))
        assert own.status_code == 200
        assert [f["content"] for f in own.json()["items"]] == [
            ["The user lives in Porto.", "The user lives in Oslo."][mine]
        ]
        # Naming the other tenant is refused; the key's own tenant is the only one it reaches.
        refused = await client.get("/v1/users/ana/facts", params={"tenant_id": tenants[other]},
                                   headers=key(keys[mine]))
        assert refused.status_code == 403
        assert refused.json()["error"] == "tenant_mismatch"
        summary = await client.post("/v1/conversations/c1/summarize", headers=key(keys[mine]))
        assert summary.status_code == 200
        assert summary.json()["content"] == "user: " + ["I live in Porto.", "I live in Oslo."][mine]
        refused = await client.post("/v1/conversations/c1/summarize",
                                    params={"tenant_id": tenants[other]}, headers=key(keys[mine]))
        assert refused.status_code == 403


async def test_scopes(client: AppClient, db_engine: AsyncEngine, tenant: str) -> None:
    async with create_sessionmaker(db_engine).begin() as session:
        _, reader = await create_api_key(session, tenant, "r", scopes=[KeyScope.read])
        _, writer = await create_api_key(session, tenant, "w", scopes=[KeyScope.write])
    await say(client, tenant, "I live in Porto.")
    assert (await client.get("/v1/users/ana/facts", headers=key(reader))).status_code == 200
    refused = await client.get("/v1/users/ana/facts", headers=key(writer))
    assert refused.status_code == 403
    assert refused.json()["detail"]["required_scope"] == "read"
    assert (await client.post("/v1/conversations/c1/summarize",
                              headers=key(writer))).status_code == 200
    refused = await client.post("/v1/conversations/c1/summarize", headers=key(reader))
    assert refused.json()["detail"]["required_scope"] == "write"
    anonymous = await client.get("/v1/users/ana/facts", headers={"X-API-Key": ""})
    assert anonymous.status_code == 401


async def test_openapi_documents_the_routes_and_their_statuses(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    facts = spec["paths"]["/v1/users/{user_id}/facts"]["get"]
    assert facts["operationId"] == "list_user_facts"
    assert set(facts["responses"]) >= {"200", "400", "401", "403", "422", "429", "503"}
    summarize = spec["paths"]["/v1/conversations/{conversation_id}/summarize"]["post"]
    assert summarize["operationId"] == "summarize_conversation"
    assert set(summarize["responses"]) >= {"200", "401", "403", "404", "409", "422", "429", "503"}
