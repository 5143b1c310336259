"""GET /v1/messages: a tenant's memories by kind, user, tag and time, without a query, a page at a
time; the tenant wall with two tenant-bound keys."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from tests.conversations.test_conversations import all_pages, get_json
from tests.fixtures.app import running_client
from tests.fixtures.rows import at, insert_rows, message_row
from tests.fixtures.tenants import new_tenant, tenant_key


def row(tenant: str, conversation: str, minute: float, **fields: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {
        name: fields.pop(name) for name in ("metadata_", "importance", "pii_kinds") if name in fields
    }
    return {**message_row(tenant, conversation, at(minute), **fields), **extra}


async def seed(engine: AsyncEngine, tenant: str) -> dict[str, str]:
    """A user's facts, preferences and events in three conversations; ids by a short name."""
    rows = {
        "paris": row(tenant, "c1", 1, kind="fact", user_id="ana", content="Ana loves Paris",
                     metadata_={"tags": ["travel", "france"]}, importance=0.9),
        "sushi": row(tenant, "c1", 2, kind="preference", user_id="ana", content="Ana likes sushi",
                     metadata_={"tags": ["food"], "category": "cuisine"}, importance=0.3),
        "flight": row(tenant, "c2", 3, kind="event", user_id="ana", content="Flight booked",
                      metadata_={"tags": ["travel"], "type": "booking"}, importance=0.6),
        "bob": row(tenant, "c3", 4, kind="fact", user_id="bob", content="Bob lives in Rome",
                   metadata_={"tags": ["travel"]}, importance=0.6),
        "turn": row(tenant, "c2", 5, role="assistant", content="Have a nice trip",
                    pii_kinds=["email"]),
        "old": row(tenant, "c3", 6, kind="fact", user_id="ana", content="Ana lived in Oslo",
                   archived=True, metadata_={"tags": ["travel"]}),
    }
    await insert_rows(engine, list(rows.values()))
    return {name: str(values["id"]) for name, values in rows.items()}


def names(ids: dict[str, str], body: dict[str, Any]) -> list[str]:
    by_id = {value: key for key, value in ids.items()}
    return [by_id[item["message_id"]] for item in body["items"]]


async def test_messages_are_listed_by_kind_user_tag_and_time(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    ids = await seed(db_engine, tenant)
    everything = await get_json(client, "/v1/messages", tenant_id=tenant)
    # Newest first, across conversations; archived messages only when asked for.
    assert names(ids, everything) == ["turn", "bob", "flight", "sushi", "paris"]
    assert everything["next_cursor"] is None
    assert everything["items"][0]["conversation_id"] == "c2"
    assert everything["items"][-1]["metadata"] == {"tags": ["travel", "france"]}

    def listed(**params: Any) -> Any:
        return get_json(client, "/v1/messages", tenant_id=tenant, **params)

    # "The user's facts tagged travel."
    travel_facts = await listed(kind="fact", user_id="ana", metadata=json.dumps({"tags": ["travel"]}))
    assert names(ids, travel_facts) == ["paris"]
    assert names(ids, await listed(
        kind="fact", user_id="ana", metadata='{"tags": ["travel"]}', include_archived="true"
    )) == ["old", "paris"]
    # "Events of type booking in a time window."
    assert names(ids, await listed(
        kind="event", metadata='{"type": "booking"}', since=at(2.5).isoformat(), until=at(3).isoformat()
    )) == ["flight"]
    assert names(ids, await listed(kind="event", since=at(3.5).isoformat())) == []
    # "Preferences of category cuisine."
    assert names(ids, await listed(kind="preference", metadata='{"category": "cuisine"}')) == ["sushi"]
    # Tags are contained, not equal: both tags must be there.
    assert names(ids, await listed(metadata='{"tags": ["travel", "france"]}')) == ["paris"]
    assert names(ids, await listed(conversation_id="c2")) == ["turn", "flight"]
    assert names(ids, await listed(role="assistant")) == ["turn"]
    assert names(ids, await listed(pii_kind="email")) == ["turn"]
    assert names(ids, await listed(importance_min=0.6)) == ["bob", "flight", "paris"]
    assert names(ids, await listed(order="asc", limit=2)) == ["paris", "sushi"]


async def test_messages_are_listed_by_importance_with_ties_in_time_order(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    ids = await seed(db_engine, tenant)
    top = await get_json(client, "/v1/messages", tenant_id=tenant, sort="importance")
    # 0.9, then 0.6 twice (the newer first), then 0.5 and 0.3.
    assert names(ids, top) == ["paris", "bob", "flight", "turn", "sushi"]
    least = await get_json(client, "/v1/messages", tenant_id=tenant, sort="importance", order="asc")
    assert names(ids, least) == ["sushi", "turn", "flight", "bob", "paris"]
    # Paged one at a time, the pages add up to the same order (float positions survive the cursor).
    pages = await all_pages(client, "/v1/messages", "message_id", tenant_id=tenant,
                            sort="importance", limit=1)
    assert [page[0] for page in pages] == [item["message_id"] for item in top["items"]]


async def test_pages_cover_every_message_once_and_cursors_keep_their_listing(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await insert_rows(db_engine, [
        row(tenant, f"c{n % 3}", n, kind="fact" if n % 2 else "message") for n in range(23)
    ])
    pages = await all_pages(client, "/v1/messages", "message_id", tenant_id=tenant, limit=5)
    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    flat = [message_id for page in pages for message_id in page]
    assert len(set(flat)) == 23
    facts = await all_pages(client, "/v1/messages", "message_id", tenant_id=tenant, kind="fact", limit=4)
    assert sum(len(page) for page in facts) == 11

    first = await get_json(client, "/v1/messages", tenant_id=tenant, limit=5)
    # The cursor belongs to its filters and order: another kind or order is a 400.
    for changed in ({"kind": "fact"}, {"order": "asc"}, {"sort": "importance"},
                    {"metadata": '{"a": 1}'}):
        body = await get_json(client, "/v1/messages", 400, tenant_id=tenant, limit=5,
                              cursor=first["next_cursor"], **changed)
        assert body["error"] == "invalid_cursor"


async def test_bad_filters_are_422(client: httpx.AsyncClient, tenant: str) -> None:
    for params in ({"metadata": "[1]"}, {"metadata": "{"}, {"kind": "rumour"}, {"sort": "score"},
                   {"limit": 0}, {"since": at(5).isoformat(), "until": at(1).isoformat()}):
        response = await client.get("/v1/messages", params={"tenant_id": tenant, **params})
        assert response.status_code == 422, (params, response.text)


async def test_expired_messages_are_never_listed(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    ids = await insert_rows(db_engine, [row(tenant, "c", 1), row(tenant, "c", 2)])
    async with db_engine.begin() as connection:
        await connection.execute(
            text("UPDATE messages SET expires_at = now() - interval '1 second' "
                 "WHERE tenant_id = :t AND id = :id"),
            {"t": tenant, "id": ids[0]},
        )
    body = await get_json(client, "/v1/messages", tenant_id=tenant)
    assert [item["message_id"] for item in body["items"]] == [str(ids[1])]


async def test_each_tenant_key_lists_only_its_own_messages(
    settings_factory: Any, db_engine: AsyncEngine
) -> None:
    tenants = (new_tenant(), new_tenant())
    ids = [await insert_rows(db_engine, [row(t, "shared", n) for n in range(3)]) for t in tenants]
    settings: Settings = settings_factory()
    cursors: list[str] = []
    for mine, other, own_ids in ((0, 1, ids[0]), (1, 0, ids[1])):
        key = await tenant_key(db_engine, tenants[mine])
        async with running_client(settings, headers={"X-API-Key": key}) as http:
            body = await get_json(http, "/v1/messages", conversation_id="shared")
            assert {item["message_id"] for item in body["items"]} == {str(i) for i in own_ids}
            assert {item["tenant_id"] for item in body["items"]} == {tenants[mine]}
            refused = await get_json(http, "/v1/messages", 403, tenant_id=tenants[other])
            assert refused["error"] == "tenant_mismatch"
            if cursors:  # the first tenant's cursor, presented by the second tenant's key
                foreign = await get_json(http, "/v1/messages", 400, limit=1, cursor=cursors[0])
                assert foreign["error"] == "invalid_cursor"
            page = await get_json(http, "/v1/messages", limit=1)
            cursors.append(page["next_cursor"])
