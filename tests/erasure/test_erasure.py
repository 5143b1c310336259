"""DELETE /v1/users/{user_id} (GDPR erasure) and GET /v1/admin/erasures."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.erasure.repository import ErasureRepository
from tests.fixtures.app import SERVICE_KEY
from tests.fixtures.tenants import new_tenant, tenant_key

EVE_TEXTS = [
    "My name is Eve and my passport number is X1234567",
    "I live at 12 Juniper Lane near the lighthouse",
    "Eve here again: the gala dinner is on Friday",
]


async def post(
    client: httpx.AsyncClient, tenant: str, conversation: str, content: str,
    user_id: str | None = None, role: str = "user",
) -> str:
    body: dict[str, Any] = {"tenant_id": tenant, "conversation_id": conversation, "role": role,
                            "content": content}
    if user_id is not None:
        body["user_id"] = user_id
    response = await client.post("/v1/messages", json=body)
    assert response.status_code in (200, 202), response.text
    message_id: str = response.json()["message_id"]
    return message_id


async def seed(client: httpx.AsyncClient, engine: AsyncEngine, tenant: str) -> None:
    """Eve alone in e1 (with the assistant's replies), Eve and Bob in `group`, Bob alone in b1."""
    await post(client, tenant, "e1", EVE_TEXTS[0], "eve")
    await post(client, tenant, "e1", "Nice to meet you Eve, passport X1234567 noted", role="assistant")
    archived = await post(client, tenant, "e1", EVE_TEXTS[1], "eve")
    await post(client, tenant, "group", EVE_TEXTS[2], "eve")
    await post(client, tenant, "group", "Bob: the gala dinner needs a venue", "bob")
    await post(client, tenant, "group", "The gala venue is booked", role="assistant")
    await post(client, tenant, "b1", "Bob likes the lighthouse too", "bob")
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE messages SET archived_at = now() WHERE tenant_id = :t AND id = :id"),
            {"t": tenant, "id": archived},
        )


async def search_contents(client: httpx.AsyncClient, tenant: str, query: str) -> list[str]:
    response = await client.get(
        "/v1/memory/search",
        params={"tenant_id": tenant, "query": query, "top_k": 50, "include_archived": "true"},
    )
    assert response.status_code == 200, response.text
    return [item["content"] for item in response.json()["items"]]


async def test_erasing_a_user_leaves_nothing_of_them(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await seed(client, db_engine, tenant)
    assert EVE_TEXTS[0] in await search_contents(client, tenant, "passport Eve")
    sizes = client.app.state.tenant_sizes  # type: ignore[attr-defined]
    other = new_tenant()
    sizes[tenant], sizes[other] = (7, 70, "messages"), (3, 70, "messages")

    response = await client.delete("/v1/users/eve", params={"tenant_id": tenant})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tenant_id"] == tenant
    assert body["user_id"] == "eve"
    assert body["principal"] == "admin-key"
    assert body["counts"] == {
        "messages": 4, "user_messages": 3, "unattributed_messages": 1, "conversations": 2,
        "conversation_states": 0,
        "conversation_descriptions": 0,
        "events": 0,
    }
    assert tenant not in sizes  # dropped after the commit
    assert sizes[other] == (3, 70, "messages")

    # Search: nothing Eve wrote, nor the assistant's reply in her own conversation.
    for query in ("passport Eve X1234567", "Juniper Lane lighthouse", "gala dinner Friday"):
        found = await search_contents(client, tenant, query)
        assert not any("Eve" in content or "Juniper" in content for content in found), found
    # History: her conversation is gone; the shared one keeps only the others' messages.
    e1 = await client.get(
        "/v1/conversations/e1/messages", params={"tenant_id": tenant, "include_archived": "true"}
    )
    assert e1.json()["items"] == []
    group = await client.get("/v1/conversations/group/messages", params={"tenant_id": tenant})
    assert [item["content"] for item in group.json()["items"]] == [
        "Bob: the gala dinner needs a venue", "The gala venue is booked"
    ]
    assert (await client.get("/v1/conversations/e1", params={"tenant_id": tenant})).status_code == 404
    listed = await client.get("/v1/conversations", params={"tenant_id": tenant, "user_id": "eve"})
    assert listed.json()["items"] == []
    # Stats: no message, no user.
    eve = (await client.get("/v1/stats", params={"tenant_id": tenant, "user_id": "eve"})).json()
    assert eve["messages"] == 0
    everyone = (await client.get("/v1/stats", params={"tenant_id": tenant})).json()
    assert (everyone["messages"], everyone["users"], everyone["conversations"]) == (3, 1, 2)
    # Export: only what is left, nothing of Eve.
    exported = await client.get("/v1/export", params={"tenant_id": tenant})
    assert exported.status_code == 200, exported.text
    lines = [json.loads(line) for line in exported.text.splitlines() if line]
    assert len(lines) == 3
    assert not any(line["user_id"] == "eve" or "Eve" in line["content"] for line in lines)

    # The record proves the erasure and holds no content.
    async with db_engine.connect() as connection:
        record = (await connection.execute(
            text("SELECT user_id, principal, counts FROM erasures WHERE tenant_id = :t AND id = :id"),
            {"t": tenant, "id": body["erasure_id"]},
        )).one()
    assert record.user_id == "eve"
    assert record.principal == "admin-key"
    assert record.counts == body["counts"]
    stored = json.dumps(list(record))
    assert not any(word in stored for word in ("passport", "Juniper", "gala", "X1234567"))


async def test_erasing_again_is_harmless_and_recorded_again(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await seed(client, db_engine, tenant)
    first = (await client.delete("/v1/users/eve", params={"tenant_id": tenant})).json()
    again = await client.delete("/v1/users/eve", params={"tenant_id": tenant})
    assert again.status_code == 200
    assert again.json()["counts"] == {
        "messages": 0, "user_messages": 0, "unattributed_messages": 0, "conversations": 0,
        "conversation_states": 0,
        "conversation_descriptions": 0,
        "events": 0,
    }
    assert again.json()["erasure_id"] != first["erasure_id"]
    never = await client.delete("/v1/users/nobody", params={"tenant_id": tenant})
    assert never.status_code == 200
    assert never.json()["counts"]["messages"] == 0
    records = (await client.get(
        "/v1/admin/erasures", params={"tenant_id": tenant, "user_id": "eve"}
    )).json()
    assert [item["erasure_id"] for item in records["items"]] == [
        again.json()["erasure_id"], first["erasure_id"]
    ]


async def test_unattributed_messages_can_be_kept(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await seed(client, db_engine, tenant)
    response = await client.delete(
        "/v1/users/eve", params={"tenant_id": tenant, "include_unattributed": "false"}
    )
    assert response.json()["counts"] == {
        "messages": 3, "user_messages": 3, "unattributed_messages": 0, "conversations": 2,
        "conversation_states": 0,
        "conversation_descriptions": 0,
        "events": 0,
    }
    e1 = await client.get("/v1/conversations/e1/messages", params={"tenant_id": tenant})
    assert [item["role"] for item in e1.json()["items"]] == ["assistant"]


async def test_the_deletion_and_the_record_share_one_transaction(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(client, db_engine, tenant)

    async def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the record could not be written")

    monkeypatch.setattr(ErasureRepository, "record", fail)
    # The app answers 500; the test transport re-raises the error as well.
    with pytest.raises(RuntimeError, match="could not be written"):
        await client.delete("/v1/users/eve", params={"tenant_id": tenant})
    async with db_engine.connect() as connection:
        left = (await connection.execute(
            text("SELECT count(*) FROM messages WHERE tenant_id = :t AND user_id = 'eve'"),
            {"t": tenant},
        )).scalar_one()
        records = (await connection.execute(
            text("SELECT count(*) FROM erasures WHERE tenant_id = :t"), {"t": tenant}
        )).scalar_one()
    assert (left, records) == (3, 0)


async def test_listing_erasures_is_for_admins_and_pages(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    for user in ("u1", "u2", "u3"):
        await post(client, tenant, f"c-{user}", "something", user)
        assert (await client.delete(f"/v1/users/{user}", params={"tenant_id": tenant})).status_code == 200
    other = new_tenant()
    await client.delete("/v1/users/u1", params={"tenant_id": other})

    for key in (SERVICE_KEY, await tenant_key(db_engine, tenant)):
        refused = await client.get(
            "/v1/admin/erasures", params={"tenant_id": tenant}, headers={"X-API-Key": key}
        )
        assert refused.status_code == 403
        assert refused.json()["error"] == "insufficient_scope"

    seen: list[str] = []
    cursor: str | None = None
    first_cursor: str | None = None
    while True:
        page = (await client.get(
            "/v1/admin/erasures", params={"tenant_id": tenant, "limit": 2, "cursor": cursor}
        )).json()
        seen += [item["user_id"] for item in page["items"]]
        assert all(item["tenant_id"] == tenant for item in page["items"])
        cursor = page["next_cursor"]
        first_cursor = first_cursor or cursor
        if cursor is None:
            break
    assert seen == ["u3", "u2", "u1"]
    one = (await client.get("/v1/admin/erasures", params={"tenant_id": other})).json()
    assert [(item["user_id"], item["counts"]["messages"]) for item in one["items"]] == [("u1", 0)]
    assert first_cursor is not None
    scopes: list[dict[str, str]] = [{"tenant_id": other}, {"tenant_id": tenant, "user_id": "u1"}, {}]
    for params in scopes:
        foreign = await client.get("/v1/admin/erasures", params={**params, "cursor": first_cursor})
        assert foreign.status_code == 400
        assert foreign.json()["error"] == "invalid_cursor"


async def test_tenant_walls(client: httpx.AsyncClient, db_engine: AsyncEngine) -> None:
    mine, theirs = new_tenant(), new_tenant()
    await seed(client, db_engine, theirs)
    my_key = await tenant_key(db_engine, mine)
    me = {"X-API-Key": my_key}
    refused = await client.delete("/v1/users/eve", params={"tenant_id": theirs}, headers=me)
    assert refused.status_code == 403
    assert refused.json()["error"] == "tenant_mismatch"
    # Their user id, guessed, erases nothing of theirs.
    own = await client.delete("/v1/users/eve", headers=me)
    assert own.status_code == 200
    assert own.json()["tenant_id"] == mine
    assert own.json()["counts"]["messages"] == 0
    assert own.json()["principal"].startswith("key:")
    async with db_engine.connect() as connection:
        left = (await connection.execute(
            text("SELECT count(*) FROM messages WHERE tenant_id = :t"), {"t": theirs}
        )).scalar_one()
    assert left == 7
    # Their key, the other way round: my user is safe from them, and their Eve is still there.
    them = {"X-API-Key": await tenant_key(db_engine, theirs)}
    await client.post(
        "/v1/messages", json={"conversation_id": "m", "role": "user", "content": "mine",
                              "user_id": "me"}, headers=me,
    )
    assert (await client.delete(
        "/v1/users/me", params={"tenant_id": mine}, headers=them
    )).status_code == 403
    assert (await client.delete("/v1/users/me", headers=them)).json()["counts"]["messages"] == 0
    eve = (await client.get("/v1/stats", params={"user_id": "eve"}, headers=them)).json()
    assert eve["messages"] == 3
    mine_left = (await client.get("/v1/stats", params={"user_id": "me"}, headers=me)).json()
    assert mine_left["messages"] == 1
    required = await client.delete("/v1/users/eve", headers={"X-API-Key": SERVICE_KEY})
    assert required.status_code == 422
    assert required.json()["error"] == "tenant_required"


async def test_routes_are_documented(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    erase = paths["/v1/users/{user_id}"]["delete"]
    assert erase["operationId"] == "erase_user"
    # 413 and 500 are added to every operation, 404 to every path with a parameter
    # (kit/http/openapi.py).
    assert set(erase["responses"]) == {
        "200", "401", "403", "404", "413", "422", "429", "500", "503"
    }
    listing = paths["/v1/admin/erasures"]["get"]
    assert listing["operationId"] == "list_erasures"
    assert set(listing["responses"]) == {"200", "400", "401", "403", "413", "422", "429", "500", "503"}
