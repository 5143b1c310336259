"""The per-conversation quota (max_messages_per_conversation): a write past it is refused with
409 conversation_quota_exceeded and nothing is written; exact under concurrent writers, single
and batch; the counters follow inserts and deletes."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from tests.fixtures.app import ADMIN_KEY, AppClient, running_client
from tests.fixtures.messages import count_rows, message_body, remember
from tests.policies.helpers import set_policy


async def stored(engine: AsyncEngine, tenant: str, conversation: str) -> tuple[int, int | None]:
    """(rows in messages, the conversation_usage counter) of one conversation."""
    async with engine.connect() as connection:
        rows = (await connection.execute(
            text("SELECT count(*) FROM messages WHERE tenant_id = :t AND conversation_id = :c"),
            {"t": tenant, "c": conversation},
        )).scalar_one()
        counter = (await connection.execute(
            text("SELECT messages FROM conversation_usage "
                 "WHERE tenant_id = :t AND conversation_id = :c"),
            {"t": tenant, "c": conversation},
        )).scalar_one_or_none()
    return int(rows), None if counter is None else int(counter)


def batch(tenant: str, *conversations: str, key: str | None = None) -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {"conversation_id": conversation, "role": "user", "content": f"turn {n} of {conversation}"}
        for n, conversation in enumerate(conversations)
    ]
    if key is not None:
        for n, item in enumerate(items):
            item["client_message_id"] = f"{key}-{n}"
    return {"tenant_id": tenant, "messages": items}


async def test_a_write_past_the_conversation_quota_is_refused_and_writes_nothing(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    policy = await set_policy(client, tenant, max_messages_per_conversation=3)
    assert policy["effective"]["max_messages_per_conversation"] == 3
    for n in range(3):
        await remember(client, tenant, f"note {n}", conversation_id="a")
    refused = await client.post("/v1/messages", json=message_body(tenant, "one more", conversation_id="a"))
    assert refused.status_code == 409
    body = refused.json()
    assert body["error"] == "conversation_quota_exceeded"
    assert {key: body["detail"][key] for key in ("quota", "conversation_id", "limit", "current",
                                                  "requested")} == {
        "quota": "max_messages_per_conversation", "conversation_id": "a", "limit": 3,
        "current": 3, "requested": 1,
    }
    assert await stored(db_engine, tenant, "a") == (3, 3)
    # Another conversation of the tenant has a quota of its own.
    await remember(client, tenant, "elsewhere", conversation_id="b")
    # A delete makes room again; nothing was trimmed to make it.
    listing = await client.get("/v1/conversations/a/messages", params={"tenant_id": tenant})
    first = listing.json()["items"][0]["message_id"]
    deleted = await client.delete(f"/v1/messages/{first}", params={"tenant_id": tenant})
    assert deleted.status_code == 200
    assert await stored(db_engine, tenant, "a") == (2, 2)
    await remember(client, tenant, "room again", conversation_id="a")
    assert await stored(db_engine, tenant, "a") == (3, 3)
    # The whole conversation deleted: its counter row goes with its last message.
    gone = await client.delete("/v1/conversations/a", params={"tenant_id": tenant})
    assert gone.status_code == 200
    assert await stored(db_engine, tenant, "a") == (0, None)
    # 0 lifts the quota.
    await set_policy(client, tenant, max_messages_per_conversation=0)
    for n in range(3):
        await remember(client, tenant, f"free {n}", conversation_id="b")
    assert await stored(db_engine, tenant, "b") == (4, 4)


async def test_a_batch_past_one_conversation_quota_writes_nothing_and_replays_pass(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await set_policy(client, tenant, max_messages_per_conversation=3)
    first = await client.post("/v1/messages/batch", json=batch(tenant, "a", "a", "b", key="k"))
    assert first.status_code == 200, first.text
    over = await client.post("/v1/messages/batch", json=batch(tenant, "b", "a", "a"))
    assert over.status_code == 409
    assert over.json()["error"] == "conversation_quota_exceeded"
    assert over.json()["detail"]["conversation_id"] == "a"
    assert over.json()["detail"]["requested"] == 2
    assert await stored(db_engine, tenant, "a") == (2, 2)
    assert await stored(db_engine, tenant, "b") == (1, 1)
    fits = await client.post("/v1/messages/batch", json=batch(tenant, "a", "b", "b"))
    assert fits.status_code == 200, fits.text
    assert await stored(db_engine, tenant, "a") == (3, 3)
    # A retried batch stores nothing new: its replays are not refused by a full conversation.
    retried = await client.post("/v1/messages/batch", json=batch(tenant, "a", "a", "b", key="k"))
    assert retried.status_code == 200, retried.text
    assert all(item["replayed"] for item in retried.json()["items"])
    assert await count_rows(db_engine, tenant) == 6


async def test_twenty_writers_at_the_edge_of_a_conversation_quota_store_exactly_up_to_it(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine, tenant: str
) -> None:
    settings = settings_factory(db_pool_size=10, db_max_overflow=12)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        await set_policy(client, tenant, max_messages_per_conversation=5)
        for n in range(4):
            await remember(client, tenant, f"note {n}", conversation_id="edge")
        singles = await asyncio.gather(*(
            client.post("/v1/messages", json=message_body(tenant, f"racing {n}",
                                                          conversation_id="edge"))
            for n in range(20)
        ))
        # Batches of two into an empty conversation with room for 5: two fit, one never half.
        batches = await asyncio.gather(*(
            client.post("/v1/messages/batch", json=batch(tenant, "pairs", "pairs"))
            for _ in range(20)
        ))
    assert sorted(answer.status_code for answer in singles) == [200] + [409] * 19
    assert {answer.json()["error"] for answer in singles if answer.status_code == 409} == {
        "conversation_quota_exceeded"
    }
    assert sorted(answer.status_code for answer in batches) == [200] * 2 + [409] * 18
    assert await stored(db_engine, tenant, "edge") == (5, 5)
    assert await stored(db_engine, tenant, "pairs") == (4, 4)


async def test_the_policy_field_is_validated_and_defaults_to_the_setting(
    settings_factory: Callable[..., Settings], tenant: str
) -> None:
    settings = settings_factory(quota_messages_per_conversation=2)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        for wrong in (-1, "5", 1.5, True):
            answer = await client.put(
                f"/v1/admin/tenants/{tenant}/policy", json={"max_messages_per_conversation": wrong}
            )
            assert answer.status_code == 422, wrong
        read = await client.get(f"/v1/admin/tenants/{tenant}/policy")
        assert read.json()["effective"]["max_messages_per_conversation"] == 2
        assert read.json()["overrides"]["max_messages_per_conversation"] is None
        await remember(client, tenant, "one", conversation_id="c")
        await remember(client, tenant, "two", conversation_id="c")
        refused = await client.post("/v1/messages", json=message_body(tenant, "three",
                                                                      conversation_id="c"))
        assert refused.status_code == 409
        assert refused.json()["detail"]["limit"] == 2


async def test_an_import_chunk_past_a_conversation_quota_is_not_written(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await set_policy(client, tenant, max_messages_per_conversation=2)
    lines = [
        json.dumps({
            "message_id": str(uuid.uuid4()), "conversation_id": "imported",
            "role": "user", "content": f"imported {n}", "importance": 0.5,
            "created_at": "2025-01-01T00:00:00+00:00",
        })
        for n in range(3)
    ]
    imported = await client.post(
        "/v1/import", params={"tenant_id": tenant}, content="\n".join(lines).encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert imported.status_code == 409, imported.text
    assert imported.json()["error"] == "conversation_quota_exceeded"
    assert await stored(db_engine, tenant, "imported") == (0, None)
