"""A conversation's own title, tags and metadata (PATCH /v1/conversations/{id}), returned and
filtered on by the listing; `until`; deletion and erasure take them too; two tenant keys."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from tests.conversations.test_conversations import all_pages, get_json
from tests.fixtures.app import running_client
from tests.fixtures.rows import at, insert_rows, message_row
from tests.fixtures.tenants import new_tenant, tenant_key


async def describe(
    client: httpx.AsyncClient, tenant: str | None, conversation_id: str, status: int = 200,
    **body: Any,
) -> dict[str, Any]:
    params = {"tenant_id": tenant} if tenant is not None else {}
    response = await client.patch(f"/v1/conversations/{conversation_id}", params=params, json=body)
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_a_conversation_gets_a_title_tags_and_metadata_the_listing_returns(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await insert_rows(db_engine, [
        message_row(tenant, "trip", at(1), user_id="ana"),
        message_row(tenant, "trip", at(2)),
        message_row(tenant, "chat", at(3), user_id="ana"),
        message_row(tenant, "work", at(4), user_id="ana"),
    ])
    set_trip = await describe(client, tenant, "trip", title="Lisbon in May",
                              tags=["travel", "family", "travel"], metadata={"budget": 1200})
    assert set_trip["conversation_id"] == "trip"
    assert set_trip["title"] == "Lisbon in May"
    assert set_trip["tags"] == ["travel", "family"]  # each tag once
    assert set_trip["metadata"] == {"budget": 1200}
    # Fields left out stay; a title of null goes.
    changed = await describe(client, tenant, "trip", tags=["travel"])
    assert (changed["title"], changed["tags"], changed["metadata"]) == (
        "Lisbon in May", ["travel"], {"budget": 1200}
    )
    assert changed["updated_at"] >= set_trip["updated_at"]
    await describe(client, tenant, "work", tags=["work", "travel"])

    listing = await get_json(client, "/v1/conversations", tenant_id=tenant)
    by_id = {item["conversation_id"]: item for item in listing["items"]}
    assert by_id["trip"]["title"] == "Lisbon in May"
    assert by_id["trip"]["tags"] == ["travel"]
    assert by_id["trip"]["metadata"] == {"budget": 1200}
    assert by_id["trip"]["message_count"] == 2  # the join does not multiply the messages
    assert (by_id["chat"]["title"], by_id["chat"]["tags"], by_id["chat"]["metadata"]) == (None, [], {})
    one = await get_json(client, "/v1/conversations/trip", tenant_id=tenant)
    assert one == by_id["trip"]

    travel = await get_json(client, "/v1/conversations", tenant_id=tenant, tag="travel")
    assert [item["conversation_id"] for item in travel["items"]] == ["work", "trip"]
    ana_travel = await get_json(client, "/v1/conversations", tenant_id=tenant, tag="travel",
                                user_id="ana", until=at(3.5).isoformat())
    assert [item["conversation_id"] for item in ana_travel["items"]] == ["trip"]
    assert (await get_json(client, "/v1/conversations", tenant_id=tenant, tag="none"))["items"] == []

    cleared = await describe(client, tenant, "trip", title=None, metadata={})
    assert (cleared["title"], cleared["tags"], cleared["metadata"]) == (None, ["travel"], {})


async def test_until_lists_conversations_last_active_by_then_on_every_page(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await insert_rows(db_engine, [message_row(tenant, f"c{n}", at(n)) for n in range(1, 9)]
                      + [message_row(tenant, "c2", at(20))])  # c2 was active again later
    pages = await all_pages(client, "/v1/conversations", "conversation_id", tenant_id=tenant,
                            until=at(6).isoformat(), limit=2)
    assert pages == [["c6", "c5"], ["c4", "c3"], ["c1"]]
    window = await get_json(client, "/v1/conversations", tenant_id=tenant,
                            since=at(3).isoformat(), until=at(5).isoformat())
    assert [item["conversation_id"] for item in window["items"]] == ["c5", "c4", "c3"]
    first = await get_json(client, "/v1/conversations", tenant_id=tenant, until=at(6).isoformat(),
                           limit=2)
    other = await get_json(client, "/v1/conversations", 400, tenant_id=tenant,
                           until=at(7).isoformat(), limit=2, cursor=first["next_cursor"])
    assert other["error"] == "invalid_cursor"
    backwards = await client.get("/v1/conversations", params={
        "tenant_id": tenant, "since": at(5).isoformat(), "until": at(1).isoformat()})
    assert backwards.status_code == 422


async def test_bad_descriptions_are_422(client: httpx.AsyncClient, tenant: str) -> None:
    bodies: list[dict[str, Any]] = [{}, {"tags": "travel"}, {"tags": [""]}, {"tags": None}, {"title": ""},
                 {"title": 5}, {"metadata": []}, {"metadata": None}, {"colour": "red"},
                 {"tags": [f"t{n}" for n in range(51)]}, {"title": "a\u0000b"}]
    for body in bodies:
        response = await client.patch(
            "/v1/conversations/c", params={"tenant_id": tenant}, json=body
        )
        assert response.status_code == 422, (body, response.text)


async def test_metadata_obeys_the_size_limit(
    settings_factory: Any, tenant: str
) -> None:
    settings: Settings = settings_factory(max_metadata_bytes=64)
    async with running_client(settings, headers={"X-API-Key": "test-admin-key"}) as http:
        body = await describe(http, tenant, "c", 422, metadata={"text": "x" * 100})
        assert body["error"] == "metadata_too_large"


async def test_deleting_or_erasing_takes_the_description_too(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await insert_rows(db_engine, [
        message_row(tenant, "gone", at(1)),
        message_row(tenant, "eve", at(2), user_id="eve"),
        message_row(tenant, "kept", at(3), user_id="bob"),
    ])
    for conversation in ("gone", "eve", "kept"):
        await describe(client, tenant, conversation, title=f"about {conversation}")

    async def described() -> set[str]:
        async with db_engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT conversation_id FROM conversations WHERE tenant_id = :t"), {"t": tenant}
            )
            return {row[0] for row in rows}

    assert (await client.delete("/v1/conversations/gone", params={"tenant_id": tenant})).status_code == 200
    assert await described() == {"eve", "kept"}
    erased = await client.delete("/v1/users/eve", params={"tenant_id": tenant})
    assert erased.status_code == 200, erased.text
    assert erased.json()["counts"]["conversation_descriptions"] == 1
    assert await described() == {"kept"}


async def test_each_tenant_key_describes_and_sees_only_its_own_conversations(
    settings_factory: Any, db_engine: AsyncEngine
) -> None:
    tenants = (new_tenant(), new_tenant())
    for tenant in tenants:
        await insert_rows(db_engine, [message_row(tenant, "shared", at(1))])
    settings: Settings = settings_factory()
    for mine, other in ((0, 1), (1, 0)):
        key = await tenant_key(db_engine, tenants[mine])
        async with running_client(settings, headers={"X-API-Key": key}) as http:
            written = await describe(http, None, "shared", title=f"title of {tenants[mine]}",
                                     tags=[tenants[mine]])
            assert written["title"] == f"title of {tenants[mine]}"
            refused = await describe(http, tenants[other], "shared", 403, title="hijack")
            assert refused["error"] == "tenant_mismatch"
            listing = await get_json(http, "/v1/conversations")
            assert [(item["title"], item["tags"]) for item in listing["items"]] == [
                (f"title of {tenants[mine]}", [tenants[mine]])
            ]
            # The other tenant's tag finds nothing here.
            assert (await get_json(http, "/v1/conversations", tag=tenants[other]))["items"] == []
