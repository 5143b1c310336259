"""Event streams: append with per-stream seq, reads (after, type, order, cursor pages, long poll),
search by description, tenant walls, and the ways events go (conversation delete, erasure,
retention, TTL)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.auth.service import create_api_key
from memory_layer.kit.db.engine import create_sessionmaker
from memory_layer.models.api_key import KeyScope
from tests.fixtures.app import AppClient, running_client
from tests.fixtures.messages import remember
from tests.fixtures.tenants import new_tenant, tenant_key
from tests.policies.helpers import set_policy


def url(conversation: str = "c1") -> str:
    return f"/v1/conversations/{conversation}/events"


async def append(
    client: httpx.AsyncClient, tenant: str | None, type_: str = "note", conversation: str = "c1",
    **extra: Any,
) -> httpx.Response:
    body: dict[str, Any] = {"type": type_, "data": extra.pop("data", {"n": 1}), **extra}
    if tenant is not None:
        body["tenant_id"] = tenant
    return await client.post(url(conversation), json=body)


async def read(
    client: httpx.AsyncClient, tenant: str | None, conversation: str = "c1", **params: Any
) -> httpx.Response:
    if tenant is not None:
        params["tenant_id"] = tenant
    return await client.get(url(conversation), params=params)


async def stored_events(engine: AsyncEngine, tenant: str) -> int:
    async with engine.connect() as connection:
        return int(
            (
                await connection.execute(
                    text("SELECT count(*) FROM conversation_events WHERE tenant_id = :t"),
                    {"t": tenant},
                )
            ).scalar_one()
        )


async def test_appends_are_numbered_per_stream_and_read_in_either_order(
    client: AppClient, tenant: str
) -> None:
    for index, kind in enumerate(["plan", "tool.call", "tool.result", "tool.call"]):
        response = await append(client, tenant, kind, data={"i": index, "nested": [1, {"a": None}]})
        assert response.status_code == 201, response.text
        assert response.json()["seq"] == index + 1
    other = await append(client, tenant, "plan", conversation="c2")
    assert other.json()["seq"] == 1  # each stream counts on its own

    body = (await read(client, tenant)).json()
    assert [event["seq"] for event in body["items"]] == [1, 2, 3, 4]
    assert body["items"][0]["data"] == {"i": 0, "nested": [1, {"a": None}]}
    assert body["next_cursor"] is None
    after = (await read(client, tenant, after=2)).json()["items"]
    assert [event["seq"] for event in after] == [3, 4]
    calls = (await read(client, tenant, type="tool.call")).json()["items"]
    assert [event["seq"] for event in calls] == [2, 4]
    both = (await read(client, tenant, type="plan,tool.result")).json()["items"]
    assert [event["seq"] for event in both] == [1, 3]
    newest = (await read(client, tenant, order="desc", limit=3)).json()
    assert [event["seq"] for event in newest["items"]] == [4, 3, 2]
    rest = (await read(client, tenant, order="desc", limit=3, cursor=newest["next_cursor"])).json()
    assert [event["seq"] for event in rest["items"]] == [1]
    assert rest["next_cursor"] is None
    # A cursor belongs to its listing: another order is refused.
    refused = await read(client, tenant, order="asc", limit=3, cursor=newest["next_cursor"])
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_cursor"


async def test_concurrent_appends_get_distinct_gapless_numbers(client: AppClient, tenant: str) -> None:
    responses = await asyncio.gather(*(append(client, tenant, data={"i": i}) for i in range(12)))
    assert sorted(response.json()["seq"] for response in responses) == list(range(1, 13))


async def test_events_are_append_only(client: AppClient, tenant: str) -> None:
    await append(client, tenant)
    response = await client.put(url(), params={"tenant_id": tenant}, json={"type": "x"})
    assert response.status_code == 405
    # No route edits or deletes an event: the stream's path serves GET and POST only.
    paths = client.app.openapi()["paths"]
    assert set(paths["/v1/conversations/{conversation_id}/events"]) == {"get", "post"}
    assert len((await read(client, tenant)).json()["items"]) == 1


async def test_a_description_is_found_by_search(client: AppClient, tenant: str) -> None:
    response = await append(
        client, tenant, "booking", data={"id": 7},
        description="The user booked a flight to Lisbon for the conference", user_id="ana",
    )
    assert response.status_code == 201, response.text
    event = response.json()
    assert event["message_id"] is not None
    await append(client, tenant, "noise", data={"x": 1})  # no description: no message
    search = await client.get(
        "/v1/memory/search", params={"tenant_id": tenant, "query": "flight to Lisbon", "top_k": 5}
    )
    assert search.status_code == 200, search.text
    items = search.json()["items"]
    assert [item["message_id"] for item in items] == [event["message_id"]]
    message = (
        await client.get(f"/v1/messages/{event['message_id']}", params={"tenant_id": tenant})
    ).json()
    assert message["kind"] == "event"
    assert message["metadata"] == {"event_type": "booking", "event_seq": event["seq"]}
    assert message["user_id"] == "ana"


async def test_long_poll_wakes_on_the_next_append(client: AppClient, tenant: str) -> None:
    await append(client, tenant)
    # Nothing after 1 yet: the read waits, and an append wakes it.
    waiting = asyncio.create_task(read(client, tenant, after=1, wait_seconds=20))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await append(client, tenant, "late", data={"ok": True})
    answered = await asyncio.wait_for(waiting, timeout=10)
    assert [event["type"] for event in answered.json()["items"]] == ["late"]
    # With nothing new, the wait ends empty.
    empty = await read(client, tenant, after=2, wait_seconds=0.2)
    assert empty.status_code == 200
    assert empty.json()["items"] == []


async def test_two_tenants_never_see_each_others_streams(
    settings_factory: Any, db_engine: AsyncEngine
) -> None:
    first, second = new_tenant(), new_tenant()
    keys = [await tenant_key(db_engine, first), await tenant_key(db_engine, second)]
    async with running_client(settings_factory()) as app:
        one = {"X-API-Key": keys[0]}
        two = {"X-API-Key": keys[1]}
        mine = await app.post(url("shared"), json={"type": "secret", "data": {"k": 1}}, headers=one)
        assert mine.status_code == 201
        assert (await app.get(url("shared"), headers=two)).json()["items"] == []
        # The second tenant's own stream of the same id starts at 1.
        theirs = await app.post(url("shared"), json={"type": "x"}, headers=two)
        assert theirs.json()["seq"] == 1
        walled = await app.post(
            url("shared"), json={"type": "x", "tenant_id": first}, headers=two
        )
        assert walled.status_code == 403
        peek = await app.get(url("shared"), params={"tenant_id": first}, headers=two)
        assert peek.status_code == 403
        assert [e["type"] for e in (await app.get(url("shared"), headers=one)).json()["items"]] == [
            "secret"
        ]


async def test_a_read_key_cannot_append(
    settings_factory: Any, tenant: str, db_engine: AsyncEngine
) -> None:
    async with create_sessionmaker(db_engine).begin() as session:
        _, reader_key = await create_api_key(session, tenant, "reader", scopes=[KeyScope.read])
    async with running_client(settings_factory(), headers={"X-API-Key": reader_key}) as reader:
        refused = await append(reader, None)
        assert refused.status_code == 403
        assert refused.json()["error"] == "insufficient_scope"
        assert (await read(reader, None)).status_code == 200


async def test_deleting_the_conversation_deletes_its_events(
    client: AppClient, tenant: str, db_engine: AsyncEngine
) -> None:
    await append(client, tenant, description="packed the bags for the trip")
    await append(client, tenant)
    await remember(client, tenant, "hello there")
    deleted = await client.delete("/v1/conversations/c1", params={"tenant_id": tenant})
    assert deleted.status_code == 200, deleted.text
    assert await stored_events(db_engine, tenant) == 0
    assert (await read(client, tenant)).json()["items"] == []
    # A conversation of events only is a conversation too; the stream starts again at 1.
    await append(client, tenant, conversation="only-events")
    assert (
        await client.delete("/v1/conversations/only-events", params={"tenant_id": tenant})
    ).status_code == 200
    assert (await append(client, tenant, conversation="only-events")).json()["seq"] == 1


async def test_erasing_a_user_erases_their_events(
    client: AppClient, tenant: str, db_engine: AsyncEngine
) -> None:
    await append(client, tenant, user_id="eve", description="eve moved to Porto")
    await append(client, tenant, conversation="c1")  # unnamed, in a conversation only eve is in
    await append(client, tenant, conversation="c2", user_id="bob")
    await append(client, tenant, conversation="c2")  # unnamed, in bob's conversation
    erased = await client.delete("/v1/users/eve", params={"tenant_id": tenant})
    assert erased.status_code == 200, erased.text
    assert erased.json()["counts"]["events"] == 2
    assert (await read(client, tenant)).json()["items"] == []
    assert len((await read(client, tenant, "c2")).json()["items"]) == 2
    search = await client.get("/v1/memory/search", params={"tenant_id": tenant, "query": "Porto"})
    assert search.json()["items"] == []
    assert await stored_events(db_engine, tenant) == 2


async def test_expired_events_vanish_and_retention_frees_them(
    client: AppClient, tenant: str, db_engine: AsyncEngine
) -> None:
    await append(client, tenant, "short", ttl_seconds=1, description="a fleeting reminder")
    await append(client, tenant, "long")
    await asyncio.sleep(1.1)
    assert [e["type"] for e in (await read(client, tenant)).json()["items"]] == ["long"]
    run = await client.post("/v1/admin/retention/run", json={"tenant_id": tenant})
    assert run.status_code == 200, run.text
    assert await stored_events(db_engine, tenant) == 1
    async with db_engine.connect() as connection:
        messages = (
            await connection.execute(
                text("SELECT count(*) FROM messages WHERE tenant_id = :t AND kind = 'event'"),
                {"t": tenant},
            )
        ).scalar_one()
    assert messages == 0


async def test_retention_deletes_events_by_age(
    client: AppClient, tenant: str, db_engine: AsyncEngine
) -> None:
    await append(client, tenant, "old", description="an old event about gardening")
    await append(client, tenant, "new")
    async with db_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE conversation_events SET created_at = now() - interval '400 days' "
                "WHERE tenant_id = :t AND type = 'old'"
            ),
            {"t": tenant},
        )
    run = await client.post(
        "/v1/admin/retention/run",
        json={"tenant_id": tenant, "older_than_days": 365, "action": "delete"},
    )
    assert run.status_code == 200, run.text
    assert [e["type"] for e in (await read(client, tenant)).json()["items"]] == ["new"]
    search = await client.get("/v1/memory/search", params={"tenant_id": tenant, "query": "gardening"})
    assert search.json()["items"] == []


async def test_retention_by_policy_deletes_events_at_the_age_of_kind_event(
    client: AppClient, tenant: str, db_engine: AsyncEngine
) -> None:
    await set_policy(client, tenant, retention_by_kind={"event": {"delete_after_days": 30}})
    await append(client, tenant, "old", description="an old event about sailing")
    await append(client, tenant, "new")
    async with db_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE conversation_events SET created_at = now() - interval '40 days' "
                "WHERE tenant_id = :t AND type = 'old'"
            ),
            {"t": tenant},
        )
    run = await client.post("/v1/admin/retention/run", json={"tenant_id": tenant})
    assert run.status_code == 200, run.text
    assert [e["type"] for e in (await read(client, tenant)).json()["items"]] == ["new"]
    search = await client.get("/v1/memory/search", params={"tenant_id": tenant, "query": "sailing"})
    assert search.json()["items"] == []
