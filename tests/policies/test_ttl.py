"""Message expiry: ttl_seconds, expires_at or the tenant's default TTL; an expired message is
gone for every read at once, and retention deletes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import AppClient
from tests.fixtures.messages import count_rows, message_body, remember
from tests.policies.helpers import set_policy


async def expire(engine: AsyncEngine, message_id: str) -> None:
    """Move the message's expiry to a second ago, as if its TTL had run out."""
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE messages SET expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": message_id},
        )


async def everything_readable(client: AppClient, tenant: str) -> dict[str, Any]:
    search = await client.post(
        "/v1/memory/search", json={"tenant_id": tenant, "query": "kettle", "top_k": 50}
    )
    keyword = await client.post(
        "/v1/memory/search",
        json={"tenant_id": tenant, "query": "kettle", "top_k": 50, "mode": "keyword"},
    )
    history = await client.get("/v1/conversations/c1/messages", params={"tenant_id": tenant})
    summary = await client.get("/v1/conversations/c1", params={"tenant_id": tenant})
    listing = await client.get("/v1/conversations", params={"tenant_id": tenant})
    stats = await client.get("/v1/stats", params={"tenant_id": tenant})
    export = await client.get("/v1/export", params={"tenant_id": tenant})
    return {
        "search": {item["message_id"] for item in search.json()["items"]},
        "keyword": {item["message_id"] for item in keyword.json()["items"]},
        "history": {item["message_id"] for item in history.json()["items"]},
        "summary": summary.json().get("message_count", 0),
        "listing": sum(item["message_count"] for item in listing.json()["items"]),
        "stats": (stats.json()["messages"], stats.json()["content_bytes"] > 0),
        "export": {line.split('"message_id":"')[1][:36] for line in export.text.splitlines()},
    }


async def test_an_expired_message_is_never_read_again(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    kept = await remember(client, tenant, "the kettle is descaled monthly")
    going = await remember(client, tenant, "the kettle needs a new filter", ttl_seconds=3600)
    before = await everything_readable(client, tenant)
    assert before["search"] == before["keyword"] == before["history"] == before["export"] == {
        kept, going
    }
    assert (before["summary"], before["listing"], before["stats"]) == (2, 2, (2, True))

    await expire(db_engine, going)
    after = await everything_readable(client, tenant)
    assert after["search"] == after["keyword"] == after["history"] == after["export"] == {kept}
    assert (after["summary"], after["listing"], after["stats"][0]) == (1, 1, 1)
    url = f"/v1/messages/{going}"
    assert (await client.get(url, params={"tenant_id": tenant})).status_code == 404
    edit = await client.patch(url, params={"tenant_id": tenant}, json={"importance": 0.9})
    assert edit.status_code == 404
    assert await count_rows(db_engine, tenant) == 2  # still stored, until retention

    run = await client.post("/v1/admin/retention/run", json={"tenant_id": tenant})
    assert run.json()["expired"] == 1
    assert await count_rows(db_engine, tenant) == 1


async def test_expiry_comes_from_the_request_or_the_tenant_default(
    client: AppClient, tenant: str
) -> None:
    start = datetime.now(UTC)
    never = await client.post("/v1/messages", json=message_body(tenant, "a"))
    assert never.json()["expires_at"] is None
    ttl = await client.post("/v1/messages", json=message_body(tenant, "b", ttl_seconds=60))
    at = (start + timedelta(days=2)).isoformat()
    fixed = await client.post("/v1/messages", json=message_body(tenant, "c", expires_at=at))
    assert datetime.fromisoformat(fixed.json()["expires_at"]) == datetime.fromisoformat(at)
    expires = datetime.fromisoformat(ttl.json()["expires_at"])
    assert start + timedelta(seconds=59) < expires < start + timedelta(seconds=600)

    await set_policy(client, tenant, default_ttl_seconds=86_400)
    default = await client.post("/v1/messages", json=message_body(tenant, "d"))
    expires = datetime.fromisoformat(default.json()["expires_at"])
    assert start + timedelta(hours=23) < expires < start + timedelta(hours=25)
    batch = await client.post(
        "/v1/messages/batch",
        json={"tenant_id": tenant, "messages": [
            {"conversation_id": "c", "role": "user", "content": "e"},
            {"conversation_id": "c", "role": "user", "content": "f", "ttl_seconds": 30},
        ]},
    )
    first, second = batch.json()["items"]
    read = [
        (await client.get(item["status_url"])).json()["expires_at"] for item in (first, second)
    ]
    assert start + timedelta(hours=23) < datetime.fromisoformat(read[0])
    assert datetime.fromisoformat(read[1]) < start + timedelta(hours=1)


async def test_bad_expiries_are_422(client: AppClient, tenant: str) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    soon = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"expires_at": past}, "invalid_expires_at"),
        ({"ttl_seconds": 0}, "validation_error"),
        ({"ttl_seconds": 10, "expires_at": soon}, "validation_error"),
    ]
    for extra, code in cases:
        response = await client.post("/v1/messages", json=message_body(tenant, "x", **extra))
        assert (response.status_code, response.json()["error"]) == (422, code), extra


async def test_a_retry_after_expiry_is_a_conflict(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    body = message_body(tenant, "once", client_message_id="k1", ttl_seconds=60)
    first = await client.post("/v1/messages", json=body)
    await expire(db_engine, first.json()["message_id"])
    retry = await client.post("/v1/messages", json=body)
    assert (retry.status_code, retry.json()["error"]) == (409, "idempotency_key_expired")
