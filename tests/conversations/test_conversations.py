"""GET/DELETE /v1/conversations...: summaries, history, cursor pages that stay stable, deletion."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from tests.fixtures.app import ADMIN_KEY, running_client
from tests.fixtures.rows import at, insert_rows, message_row
from tests.fixtures.tenants import new_tenant, tenant_key


async def get_json(
    client: httpx.AsyncClient, path: str, status: int = 200, **params: Any
) -> dict[str, Any]:
    response = await client.get(path, params={k: v for k, v in params.items() if v is not None})
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def post_message(
    client: httpx.AsyncClient, tenant: str, conversation_id: str, content: str, **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/messages",
        json={"tenant_id": tenant, "conversation_id": conversation_id, "role": "user",
              "content": content, **extra},
    )
    assert response.status_code in (200, 202), response.text
    body: dict[str, Any] = response.json()
    return body


async def all_pages(
    client: httpx.AsyncClient, path: str, key: str, **params: Any
) -> list[list[str]]:
    """Every page of a listing, as lists of `key` values, following next_cursor to the end."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        body = await get_json(client, path, cursor=cursor, **params)
        pages.append([item[key] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100


async def test_conversations_are_summarised_most_recent_first(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await insert_rows(db_engine, [
        message_row(tenant, "a", at(0), user_id="u1"),
        message_row(tenant, "a", at(1), user_id="u1"),
        message_row(tenant, "a", at(2), role="assistant"),
        message_row(tenant, "a", at(3), user_id="u1", archived=True),
        message_row(tenant, "b", at(10), user_id="u1"),
        message_row(tenant, "b", at(11), user_id="u2"),
        message_row(tenant, "c", at(5), role="system"),
    ])
    body = await get_json(client, "/v1/conversations", tenant_id=tenant)
    assert body["next_cursor"] is None
    by_id = {item["conversation_id"]: item for item in body["items"]}
    assert [item["conversation_id"] for item in body["items"]] == ["b", "c", "a"]
    # Archived messages are stored, so they count (and say so); the history hides them.
    assert by_id["a"]["message_count"] == 4
    assert by_id["a"]["archived_count"] == 1
    assert by_id["a"]["first_message_at"].startswith("2024-01-01T00:00:00")
    assert by_id["a"]["last_message_at"].startswith("2024-01-01T00:03:00")
    assert by_id["a"]["user_id"] == "u1"  # one named user; the assistant's turn names none
    assert by_id["b"]["user_id"] is None  # two users
    assert by_id["c"]["user_id"] is None  # nobody named
    assert by_id["b"]["message_count"] == 2

    only_u2 = await get_json(client, "/v1/conversations", tenant_id=tenant, user_id="u2")
    assert [(i["conversation_id"], i["message_count"]) for i in only_u2["items"]] == [("b", 2)]
    u1 = await get_json(client, "/v1/conversations", tenant_id=tenant, user_id="u1")
    assert [item["conversation_id"] for item in u1["items"]] == ["b", "a"]
    recent = await get_json(
        client, "/v1/conversations", tenant_id=tenant, since=at(4).isoformat()
    )
    assert [item["conversation_id"] for item in recent["items"]] == ["b", "c"]

    one = await get_json(client, "/v1/conversations/a", tenant_id=tenant)
    assert one == by_id["a"]


async def test_conversation_pages_stay_stable_while_messages_arrive(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    names = [f"c{n}" for n in range(1, 8)]  # c7 is the most recently active
    await insert_rows(db_engine, [
        message_row(tenant, name, at(n)) for n, name in enumerate(names, start=1)
    ])
    first = await get_json(client, "/v1/conversations", tenant_id=tenant, limit=3)
    assert [item["conversation_id"] for item in first["items"]] == ["c7", "c6", "c5"]

    # Between pages: an unseen conversation becomes the most active, a seen one too, and a new
    # conversation starts. Ordered by live activity, c2 would jump above the cursor and be
    # skipped; the cursor's snapshot keeps every page on the first page's view.
    await post_message(client, tenant, "c2", "c2 wakes up")
    await post_message(client, tenant, "c6", "c6 again")
    await post_message(client, tenant, "c8", "a new conversation")

    seen = [item["conversation_id"] for item in first["items"]]
    cursor = first["next_cursor"]
    while cursor is not None:
        page = await get_json(client, "/v1/conversations", tenant_id=tenant, limit=3, cursor=cursor)
        seen += [item["conversation_id"] for item in page["items"]]
        if "c2" in [item["conversation_id"] for item in page["items"]]:
            c2 = next(i for i in page["items"] if i["conversation_id"] == "c2")
            assert c2["message_count"] == 1  # as of the snapshot
        cursor = page["next_cursor"]
    assert seen == ["c7", "c6", "c5", "c4", "c3", "c2", "c1"]

    fresh = await get_json(client, "/v1/conversations", tenant_id=tenant, limit=3)
    assert [item["conversation_id"] for item in fresh["items"]] == ["c8", "c6", "c2"]
    assert fresh["items"][2]["message_count"] == 2


async def test_history_is_chronological_and_filters(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    ids = await insert_rows(db_engine, [
        message_row(tenant, "talk", at(n), role="user" if n % 2 == 0 else "assistant",
                    content=f"turn {n}")
        for n in range(5)
    ] + [
        message_row(tenant, "talk", at(5), role="system", kind="fact", content="a fact"),
        message_row(tenant, "talk", at(6), content="archived turn", archived=True),
        message_row(tenant, "other", at(2), content="elsewhere"),
    ])
    path = "/v1/conversations/talk/messages"
    history = await get_json(client, path, tenant_id=tenant)
    assert [item["content"] for item in history["items"]] == [
        "turn 0", "turn 1", "turn 2", "turn 3", "turn 4", "a fact"
    ]
    assert history["next_cursor"] is None
    first = history["items"][0]
    assert first["message_id"] == str(ids[0])
    assert first["status_url"] == f"/v1/messages/{ids[0]}?tenant_id={tenant}"
    assert first["conversation_id"] == "talk"

    with_archived = await get_json(client, path, tenant_id=tenant, include_archived="true")
    assert with_archived["items"][-1]["content"] == "archived turn"
    assert with_archived["items"][-1]["archived_at"] is not None

    last_two = await get_json(client, path, tenant_id=tenant, order="desc", limit=2)
    assert [item["content"] for item in last_two["items"]] == ["a fact", "turn 4"]
    assert last_two["next_cursor"] is not None

    assistant = await get_json(client, path, tenant_id=tenant, role="assistant")
    assert [item["content"] for item in assistant["items"]] == ["turn 1", "turn 3"]
    facts = await get_json(client, path, tenant_id=tenant, kind="fact")
    assert [item["content"] for item in facts["items"]] == ["a fact"]

    unknown = await get_json(client, "/v1/conversations/never-started/messages", tenant_id=tenant)
    assert unknown == {"items": [], "next_cursor": None}


async def test_history_pages_stay_stable_while_messages_arrive(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    # Pairs of messages share a created_at (as a batch written in one transaction does): the id
    # breaks the tie, so the order is total and a page boundary may fall between them.
    rows = [message_row(tenant, "busy", at(n // 2), content=f"old {n}") for n in range(11)]
    await insert_rows(db_engine, rows)
    old = {f"old {n}" for n in range(11)}
    path = "/v1/conversations/busy/messages"

    for order in ("asc", "desc"):
        seen: list[str] = []
        cursor: str | None = None
        added = 0
        while True:
            page = await get_json(
                client, path, tenant_id=tenant, order=order, limit=3, cursor=cursor
            )
            seen += [item["content"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
            added += 1
            await post_message(client, tenant, "busy", f"new {order} {added}")
        assert len(seen) == len(set(seen)), seen  # nothing twice
        assert old <= set(seen)  # nothing that existed was skipped
        news = [content for content in seen if content.startswith("new")]
        if order == "asc":
            # Oldest first: the old ones in (created_at, id) order, then what arrived meanwhile.
            in_key_order = sorted(rows, key=lambda row: (row["created_at"], row["id"]))
            assert seen[:11] == [row["content"] for row in in_key_order]
            assert news == [f"new asc {n}" for n in range(1, added + 1)]
        else:
            # Newest first: what arrives after the first page lies before the cursor, unseen;
            # the first page starts with what the ascending walk added.
            assert [content for content in news if "desc" in content] == []
            assert seen[0].startswith("new asc")


async def test_bad_cursors_are_400_invalid_cursor(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await insert_rows(db_engine, [message_row(tenant, name, at(n)) for n in range(4) for name in "xy"])
    page = await get_json(client, "/v1/conversations/x/messages", tenant_id=tenant, limit=1)
    cursor = page["next_cursor"]
    assert cursor is not None
    conversations = await get_json(client, "/v1/conversations", tenant_id=tenant, limit=1)
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[10] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()

    attempts: list[tuple[str, dict[str, Any]]] = [
        ("/v1/conversations/y/messages", {"cursor": cursor}),  # another conversation
        ("/v1/conversations/x/messages", {"cursor": cursor, "order": "desc"}),
        ("/v1/conversations/x/messages", {"cursor": cursor, "role": "user"}),
        ("/v1/conversations/x/messages", {"cursor": cursor, "include_archived": "true"}),
        ("/v1/conversations/x/messages", {"cursor": conversations["next_cursor"]}),
        ("/v1/conversations", {"cursor": cursor}),
        ("/v1/conversations", {"cursor": conversations["next_cursor"], "user_id": "u"}),
        ("/v1/conversations/x/messages", {"cursor": tampered}),
        ("/v1/conversations/x/messages", {"cursor": cursor[:-4]}),
        ("/v1/conversations/x/messages", {"cursor": "garbage!"}),
        ("/v1/conversations", {"cursor": "e30"}),
        ("/v1/conversations/x/messages", {"cursor": cursor, "tenant_id": new_tenant()}),
    ]
    for path, params in attempts:
        response = await client.get(path, params={"tenant_id": tenant, **params})
        assert response.status_code == 400, (path, params, response.text)
        assert response.json()["error"] == "invalid_cursor"
    # The page size may change between pages.
    resumed = await get_json(
        client, "/v1/conversations/x/messages", tenant_id=tenant, limit=10, cursor=cursor
    )
    assert len(resumed["items"]) == 3


async def test_get_and_delete_a_conversation(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await insert_rows(db_engine, [
        message_row(tenant, "doomed", at(0)),
        message_row(tenant, "doomed", at(1), archived=True),
        message_row(tenant, "doomed", at(2), role="assistant"),
        message_row(tenant, "kept", at(3)),
    ])
    missing = await client.get("/v1/conversations/nope", params={"tenant_id": tenant})
    assert missing.status_code == 404
    assert missing.json()["error"] == "conversation_not_found"

    deleted = await client.delete("/v1/conversations/doomed", params={"tenant_id": tenant})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"deleted": 3}  # the archived one too

    again = await client.delete("/v1/conversations/doomed", params={"tenant_id": tenant})
    assert again.status_code == 404
    assert again.json()["error"] == "conversation_not_found"
    gone = await client.get("/v1/conversations/doomed", params={"tenant_id": tenant})
    assert gone.status_code == 404
    history = await get_json(
        client, "/v1/conversations/doomed/messages", tenant_id=tenant, include_archived="true"
    )
    assert history["items"] == []
    listed = await get_json(client, "/v1/conversations", tenant_id=tenant)
    assert [item["conversation_id"] for item in listed["items"]] == ["kept"]


async def test_conversation_ids_with_slashes_and_colons(
    client: httpx.AsyncClient, tenant: str
) -> None:
    conversation = "support/ticket:42@web"
    await post_message(client, tenant, conversation, "hello")
    summary = await get_json(client, f"/v1/conversations/{conversation}", tenant_id=tenant)
    assert summary["message_count"] == 1
    history = await get_json(client, f"/v1/conversations/{conversation}/messages", tenant_id=tenant)
    assert [item["content"] for item in history["items"]] == ["hello"]
    deleted = await client.delete(f"/v1/conversations/{conversation}", params={"tenant_id": tenant})
    assert deleted.json() == {"deleted": 1}
    bad = await client.get("/v1/conversations/has space", params={"tenant_id": tenant})
    assert bad.status_code == 422


async def test_limits_and_tenant_are_validated(client: httpx.AsyncClient, tenant: str) -> None:
    for params in ({"limit": 0}, {"limit": 1001}, {"order": "sideways"}, {"role": "robot"},
                   {"kind": "rumour"}, {"unknown": "x"}):
        response = await client.get(
            "/v1/conversations/c/messages", params={"tenant_id": tenant, **params}
        )
        assert response.status_code == 422, params
    assert (await client.get("/v1/conversations", params={"limit": 1000, "tenant_id": tenant})
            ).status_code == 200
    required = await client.get("/v1/conversations")
    assert required.status_code == 422
    assert required.json()["error"] == "tenant_required"


async def test_tenant_walls(
    client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    mine, theirs = new_tenant(), new_tenant()
    my_key, their_key = await tenant_key(db_engine, mine), await tenant_key(db_engine, theirs)
    await insert_rows(db_engine, [
        message_row(theirs, "shared-name", at(0), content="their secret", user_id="v"),
        message_row(theirs, "shared-name", at(1), content="their second secret"),
        message_row(theirs, "theirs-only", at(2), content="their other secret"),
        message_row(mine, "shared-name", at(3), content="my note"),
    ])
    me = {"X-API-Key": my_key}

    async def status(method: str, path: str, **params: Any) -> int:
        response = await client.request(method, path, params=params, headers=me)
        return response.status_code

    # Naming the other tenant is refused outright.
    for method, path in (
        ("GET", "/v1/conversations"),
        ("GET", "/v1/conversations/theirs-only"),
        ("GET", "/v1/conversations/theirs-only/messages"),
        ("DELETE", "/v1/conversations/theirs-only"),
    ):
        assert await status(method, path, tenant_id=theirs) == 403

    # Guessing their conversation ids finds nothing, and deletes nothing.
    assert await status("GET", "/v1/conversations/theirs-only") == 404
    assert await status("DELETE", "/v1/conversations/theirs-only") == 404
    hidden = await client.get("/v1/conversations/theirs-only/messages", headers=me)
    assert hidden.json() == {"items": [], "next_cursor": None}

    # The same conversation id in both tenants: each sees and deletes only its own.
    listed = (await client.get("/v1/conversations", headers=me)).json()
    assert [(i["conversation_id"], i["message_count"]) for i in listed["items"]] == [
        ("shared-name", 1)
    ]
    history = (await client.get("/v1/conversations/shared-name/messages", headers=me)).json()
    assert [item["content"] for item in history["items"]] == ["my note"]
    deleted = await client.delete("/v1/conversations/shared-name", headers=me)
    assert deleted.json() == {"deleted": 1}

    # Their cursor is no good to me, even for a conversation id I also have.
    their_page = (await client.get(
        "/v1/conversations/shared-name/messages", params={"limit": 1},
        headers={"X-API-Key": their_key},
    )).json()
    assert their_page["next_cursor"] is not None
    stolen = await client.get(
        "/v1/conversations/shared-name/messages", params={"cursor": their_page["next_cursor"]},
        headers=me,
    )
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_cursor"

    async with db_engine.connect() as connection:
        left = (await connection.execute(
            text("SELECT count(*) FROM messages WHERE tenant_id = :t"), {"t": theirs}
        )).scalar_one()
    assert left == 3


async def test_routes_are_documented(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operations = {
        (path, method): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    }
    expected = {
        ("/v1/conversations", "get"): ("list_conversations", {"400", "401", "403", "422", "429", "503"}),
        ("/v1/conversations/{conversation_id}", "get"): (
            "get_conversation", {"401", "403", "404", "422", "429", "503"}
        ),
        ("/v1/conversations/{conversation_id}/messages", "get"): (
            "list_conversation_messages", {"400", "401", "403", "422", "429", "503"}
        ),
        ("/v1/conversations/{conversation_id}", "delete"): (
            "delete_conversation", {"401", "403", "404", "422", "429", "503"}
        ),
        ("/v1/conversations/{conversation_id}", "patch"): (
            "describe_conversation", {"400", "401", "403", "422", "429", "503"}
        ),
    }
    for key, (operation_id, errors) in expected.items():
        operation = operations[key]
        assert operation["operationId"] == operation_id
        # 413 and 500 are added to every operation, 404 to every path with a parameter
        # (kit/http/openapi.py).
        plumbing = {"200", "413", "500"} | ({"404"} if "{" in key[0] else set())
        assert errors | plumbing == set(operation["responses"])
        assert operation["description"] or operation["summary"]


async def test_cursors_are_signed_with_the_configured_secret(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine, tenant: str
) -> None:
    await insert_rows(db_engine, [message_row(tenant, "s", at(n)) for n in range(3)])
    headers = {"X-API-Key": ADMIN_KEY}
    path = "/v1/conversations/s/messages"
    params: dict[str, str | int] = {"tenant_id": tenant, "limit": 1}
    async with running_client(settings_factory(cursor_secret="first secret"), headers) as one:
        cursor = (await one.get(path, params=params)).json()["next_cursor"]
        assert (await one.get(path, params={**params, "cursor": cursor})).status_code == 200
    async with running_client(settings_factory(cursor_secret="second secret"), headers) as two:
        rotated = await two.get(path, params={**params, "cursor": cursor})
    assert rotated.status_code == 400
    assert rotated.json()["error"] == "invalid_cursor"
