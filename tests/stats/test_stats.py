"""GET /v1/stats: counts by role, kind and embedding status, in one statement, within one tenant."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.rows import at, insert_rows, message_row
from tests.fixtures.tenants import new_tenant, tenant_key

ZERO_ROLES = {"user": 0, "assistant": 0, "system": 0, "tool": 0}
ZERO_KINDS = {"message": 0, "fact": 0, "preference": 0, "procedure": 0, "summary": 0, "event": 0}
ZERO_STATUSES = {"pending": 0, "ready": 0, "failed": 0}


async def stats(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/stats", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def seed(engine: AsyncEngine, tenant: str) -> None:
    await insert_rows(engine, [
        message_row(tenant, "c1", at(0), user_id="ann", content="héllo", embedding_status="ready"),
        message_row(tenant, "c1", at(1), role="assistant", content="hi €", embedding_status="ready"),
        message_row(tenant, "c1", at(2), user_id="ann", kind="preference", content="I like tea",
                    archived=True),
        message_row(tenant, "c2", at(3), user_id="bob", kind="fact", content="abc",
                    embedding_status="failed"),
        message_row(tenant, "c3", at(4), role="tool", content="{}"),
    ])


async def test_counts_a_tenant(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await seed(db_engine, tenant)
    body = await stats(client, tenant_id=tenant)
    assert body == {
        "tenant_id": tenant,
        "user_id": None,
        "conversation_id": None,
        "messages": 5,
        "archived": 1,
        "by_role": {**ZERO_ROLES, "user": 3, "assistant": 1, "tool": 1},
        "by_kind": {**ZERO_KINDS, "message": 3, "preference": 1, "fact": 1},
        "by_embedding_status": {**ZERO_STATUSES, "ready": 2, "pending": 2, "failed": 1},
        "conversations": 3,
        "users": 2,
        # héllo 6 bytes, "hi €" 6, "I like tea" 10, abc 3, {} 2
        "content_bytes": 27,
        "oldest_message_at": "2024-01-01T00:00:00Z",
        "newest_message_at": "2024-01-01T00:04:00Z",
    }


async def test_narrows_to_a_user_or_a_conversation(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await seed(db_engine, tenant)
    ann = await stats(client, tenant_id=tenant, user_id="ann")
    assert (ann["user_id"], ann["messages"], ann["conversations"], ann["users"]) == ("ann", 2, 1, 1)
    assert ann["by_kind"] == {**ZERO_KINDS, "message": 1, "preference": 1}
    assert ann["content_bytes"] == 16
    c1 = await stats(client, tenant_id=tenant, conversation_id="c1")
    assert (c1["conversation_id"], c1["messages"], c1["users"], c1["archived"]) == ("c1", 3, 1, 1)
    assert c1["by_role"] == {**ZERO_ROLES, "user": 2, "assistant": 1}
    both = await stats(client, tenant_id=tenant, user_id="bob", conversation_id="c1")
    assert both["messages"] == 0


async def test_an_empty_tenant_has_zeros_and_no_times(client: httpx.AsyncClient) -> None:
    body = await stats(client, tenant_id=new_tenant())
    assert body["messages"] == body["conversations"] == body["users"] == body["content_bytes"] == 0
    assert body["by_role"] == ZERO_ROLES
    assert body["by_kind"] == ZERO_KINDS
    assert body["by_embedding_status"] == ZERO_STATUSES
    assert body["oldest_message_at"] is None
    assert body["newest_message_at"] is None


async def test_one_statement_answers(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await seed(db_engine, tenant)
    engine: AsyncEngine = client.app.state.engine  # type: ignore[attr-defined]
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        await stats(client, tenant_id=tenant)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    # One statement on `messages` (the tenant's policy, read for its rate limit, is another table).
    assert len([sql for sql in statements if "FROM messages" in sql]) == 1, statements


async def test_tenant_walls(client: httpx.AsyncClient, db_engine: AsyncEngine) -> None:
    mine, theirs = new_tenant(), new_tenant()
    await seed(db_engine, theirs)
    await insert_rows(db_engine, [message_row(mine, "c1", at(9), user_id="ann")])
    me = {"X-API-Key": await tenant_key(db_engine, mine)}
    refused = await client.get("/v1/stats", params={"tenant_id": theirs}, headers=me)
    assert refused.status_code == 403
    assert refused.json()["error"] == "tenant_mismatch"
    own = (await client.get("/v1/stats", headers=me)).json()
    assert (own["tenant_id"], own["messages"], own["users"]) == (mine, 1, 1)
    # Their user and conversation ids, guessed, count nothing of theirs.
    guessed = (await client.get(
        "/v1/stats", params={"user_id": "bob", "conversation_id": "c2"}, headers=me
    )).json()
    assert guessed["messages"] == 0
    same_ids = (await client.get("/v1/stats", params={"user_id": "ann"}, headers=me)).json()
    assert same_ids["messages"] == 1
    # Their own key counts only theirs.
    them = {"X-API-Key": await tenant_key(db_engine, theirs)}
    their_view = (await client.get("/v1/stats", headers=them)).json()
    assert (their_view["tenant_id"], their_view["messages"], their_view["users"]) == (theirs, 5, 2)
    assert (await client.get("/v1/stats", params={"tenant_id": mine}, headers=them)).status_code == 403


async def test_route_is_documented(client: httpx.AsyncClient) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/v1/stats"]["get"]
    assert operation["operationId"] == "get_stats"
    # 413 and 500 are added to every operation (kit/http/openapi.py).
    assert set(operation["responses"]) == {"200", "401", "403", "413", "422", "429", "500", "503"}
