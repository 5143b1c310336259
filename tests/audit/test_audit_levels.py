"""A tenant's audit_level: `admin` records only the operators' actions (as before), `writes` every
write of its data (`api.write`), `all` every read and search too (`api.read`, the query's length,
never its text); entries commit with the request, and a refused request records nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.audit.test_audit import entries
from tests.fixtures.app import AppClient
from tests.fixtures.messages import message_body, remember
from tests.fixtures.tenants import new_tenant, tenant_key
from tests.policies.helpers import set_policy

QUERY = "where did alice spend her holidays"


async def trail(client: AppClient, tenant: str) -> list[dict[str, Any]]:
    """The tenant's api.write / api.read entries, oldest first."""
    found = [
        entry for entry in await entries(client, tenant_id=tenant, limit=1000)
        if entry["action"] in ("api.write", "api.read")
    ]
    return found[::-1]


async def exercise(client: AppClient, tenant: str) -> str:
    """One of each: writes (message, batch, edit, usage, state, delete) and reads (get, listing,
    history, search, context); the id of the message kept."""
    kept = await remember(client, tenant, "alice spent her holidays in Lisbon", conversation_id="c1")
    dropped = await remember(client, tenant, "to be deleted", conversation_id="c1")
    batch = await client.post("/v1/messages/batch", json={"tenant_id": tenant, "messages": [
        {"conversation_id": "c2", "role": "user", "content": f"batch {n}"} for n in range(2)
    ]})
    assert batch.status_code == 200, batch.text
    params = {"tenant_id": tenant}
    answers = [
        await client.patch(f"/v1/messages/{kept}", params=params, json={"importance": 0.9}),
        await client.put("/v1/conversations/c1/state", params=params, json={"state": {"step": 1}}),
        await client.delete(f"/v1/messages/{dropped}", params=params),
        await client.get(f"/v1/messages/{kept}", params=params),
        await client.get("/v1/messages", params=params),
        await client.get("/v1/conversations/c1/messages", params=params),
        await client.get("/v1/memory/search", params={**params, "query": QUERY}),
        await client.post("/v1/context", json={**params, "conversation_id": "c1", "query": QUERY}),
    ]
    assert [answer.status_code for answer in answers] == [200, 201, 200, 200, 200, 200, 200, 200], [
        answer.text for answer in answers
    ]
    return kept


async def test_admin_level_records_no_request_of_the_tenant(client: AppClient, tenant: str) -> None:
    policy = await set_policy(client, tenant)
    assert policy["effective"]["audit_level"] == "admin"
    await exercise(client, tenant)
    assert await trail(client, tenant) == []
    # The operators' actions are recorded as they always were.
    assert [entry["action"] for entry in await entries(client, tenant_id=tenant)][:1] == [
        "message.deleted"
    ]


async def test_writes_level_records_every_write_and_no_read(client: AppClient, tenant: str) -> None:
    await set_policy(client, tenant, audit_level="writes")
    kept = await exercise(client, tenant)
    recorded = await trail(client, tenant)
    assert {entry["action"] for entry in recorded} == {"api.write"}
    assert [(entry["route"], entry["target"]) for entry in recorded][2:] == [
        ("POST /v1/messages/batch", None),
        ("PATCH /v1/messages/{message_id}", f"message:{kept}"),
        ("PUT /v1/conversations/{conversation_id}/state", "conversation:c1"),
    ]
    assert recorded[0]["route"] == "POST /v1/messages"
    assert recorded[0]["target"] == f"message:{kept}"
    assert recorded[0]["counts"] == {"messages": 1}
    assert recorded[2]["counts"] == {"messages": 2, "replayed": 0}
    assert all(entry["actor"] == "admin-key" and entry["tenant_id"] == tenant for entry in recorded)
    # The deletion is recorded once, as the message.deleted it always was.
    deletions = [entry for entry in await entries(client, tenant_id=tenant)
                 if entry["target"] and entry["target"].startswith("message:")
                 and entry["action"] == "message.deleted"]
    assert len(deletions) == 1
    assert len(recorded) == 5


async def test_all_level_records_reads_and_searches_without_the_query(
    client: AppClient, db_engine: AsyncEngine
) -> None:
    tenant, quiet = new_tenant(), new_tenant()
    await set_policy(client, tenant, audit_level="all")
    await set_policy(client, quiet, audit_level="writes")
    kept = await exercise(client, tenant)
    recorded = await trail(client, tenant)
    reads = [entry for entry in recorded if entry["action"] == "api.read"]
    assert [(entry["route"], entry["target"]) for entry in reads] == [
        ("GET /v1/messages/{message_id}", f"message:{kept}"),
        ("GET /v1/messages", None),
        ("GET /v1/conversations/{conversation_id}/messages", "conversation:c1"),
        ("GET /v1/memory/search", None),
        ("POST /v1/context", None),
    ]
    search = reads[3]
    assert search["counts"]["query_chars"] == len(QUERY)
    assert search["counts"]["results"] >= 1
    assert QUERY not in str(await entries(client, tenant_id=tenant, limit=1000))
    # Another tenant's level is its own: a tenant-bound key's reads at `writes` are not recorded.
    key = await tenant_key(db_engine, quiet)
    await remember(client, quiet, "quiet tenant's note")
    searched = await client.get(
        "/v1/memory/search", params={"query": "note"}, headers={"X-API-Key": key}
    )
    assert searched.status_code == 200
    written = await client.post(
        "/v1/messages", json={k: v for k, v in message_body(quiet, "by its own key").items()
                              if k != "tenant_id"},
        headers={"X-API-Key": key},
    )
    assert written.status_code == 200
    quiet_trail = await trail(client, quiet)
    assert [entry["action"] for entry in quiet_trail] == ["api.write", "api.write"]
    assert quiet_trail[1]["actor"].startswith("key:")
    assert quiet_trail[1]["key_id"] is not None


async def test_a_refused_or_failed_request_records_nothing(client: AppClient, tenant: str) -> None:
    await set_policy(client, tenant, audit_level="all", max_messages_per_conversation=1)
    await remember(client, tenant, "the only one", conversation_id="full")
    refused = await client.post("/v1/messages", json=message_body(tenant, "two", conversation_id="full"))
    assert refused.status_code == 409
    missing = await client.get(
        "/v1/messages/00000000-0000-4000-8000-000000000000", params={"tenant_id": tenant}
    )
    assert missing.status_code == 404
    assert [entry["route"] for entry in await trail(client, tenant)] == ["POST /v1/messages"]


async def test_the_policy_field_takes_only_the_three_levels(client: AppClient, tenant: str) -> None:
    for wrong in ("everything", "", 1, None):
        answer = await client.put(f"/v1/admin/tenants/{tenant}/policy", json={"audit_level": wrong})
        assert answer.status_code == (200 if wrong is None else 422), wrong
    for level in ("admin", "writes", "all"):
        assert (await set_policy(client, tenant, audit_level=level))["effective"]["audit_level"] == level
