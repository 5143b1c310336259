"""Writes to channels: unknown channels, TTL ceilings, personal data, the daily quota (exact under
20 concurrent writers); each refusal a documented 4xx with nothing written. A tenant without
channels writes as before."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from tests.channels.helpers import put_channel
from tests.fixtures.app import ADMIN_KEY, AppClient, running_client
from tests.fixtures.messages import count_rows, message_body


async def test_a_tenant_without_channels_writes_as_before(client: AppClient, tenant: str) -> None:
    plain = await client.post("/v1/messages", json=message_body(tenant, "no channel named"))
    assert plain.status_code == 200
    assert plain.json()["channel"] == "default"
    named = await client.post("/v1/messages", json=message_body(tenant, "hi", channel="notes"))
    assert named.status_code == 200
    assert named.json()["channel"] == "notes"
    assert named.json()["expires_at"] is None
    assert named.json()["encrypted"] is False
    bad = await client.post("/v1/messages", json=message_body(tenant, "hi", channel="Bad-Name"))
    assert bad.status_code == 422


async def test_unknown_channels_are_refused_once_the_tenant_has_channels(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await put_channel(client, tenant, "working")
    unknown = await client.post("/v1/messages", json=message_body(tenant, "x", channel="other"))
    assert unknown.status_code == 422
    assert unknown.json()["error"] == "unknown_channel"
    assert "default, working" in unknown.json()["detail"]
    batch = await client.post("/v1/messages/batch", json={"tenant_id": tenant, "messages": [
        {"conversation_id": "c", "role": "user", "content": "fine", "channel": "working"},
        {"conversation_id": "c", "role": "user", "content": "not", "channel": "other"},
    ]})
    assert batch.status_code == 422
    assert "messages[1]" in batch.json()["detail"]
    assert await count_rows(db_engine, tenant) == 0
    # `default` always exists.
    ok = await client.post("/v1/messages", json=message_body(tenant, "x"))
    assert ok.status_code == 200


async def test_the_channel_ttl_sets_expiry_and_caps_overrides(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await put_channel(client, tenant, "working", ttl_sec=3600)
    before = datetime.now(UTC)
    stored = await client.post("/v1/messages", json=message_body(tenant, "a", channel="working"))
    expires = datetime.fromisoformat(stored.json()["expires_at"])
    assert before + timedelta(seconds=3590) < expires < datetime.now(UTC) + timedelta(seconds=3610)
    shorter = await client.post(
        "/v1/messages", json=message_body(tenant, "b", channel="working", ttl_seconds=60)
    )
    assert shorter.status_code == 200
    for override in (
        {"ttl_seconds": 3601},
        {"expires_at": (datetime.now(UTC) + timedelta(hours=2)).isoformat()},
    ):
        refused = await client.post(
            "/v1/messages", json=message_body(tenant, "c", channel="working", **override)
        )
        assert refused.status_code == 422, override
        assert refused.json()["error"] == "ttl_violation"
    assert await count_rows(db_engine, tenant) == 2
    # The default channel, unregistered, has no ceiling.
    free = await client.post("/v1/messages", json=message_body(tenant, "d", ttl_seconds=10**6))
    assert free.status_code == 200


async def test_personal_data_needs_an_encrypted_channel_when_the_channel_says_so(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await put_channel(client, tenant, "open", pii="require_encryption")
    await put_channel(client, tenant, "sealed", pii="require_encryption", encrypt=True)
    await put_channel(client, tenant, "scrubbed", pii="redact")
    await put_channel(client, tenant, "closed", pii="refuse")
    email = "write to ada@example.com tomorrow"
    refused = await client.post("/v1/messages", json=message_body(tenant, email, channel="open"))
    assert refused.status_code == 422
    assert refused.json()["error"] == "encryption_required"
    assert refused.json()["detail"]["kinds"] == ["email"]
    assert await count_rows(db_engine, tenant) == 0
    clean = await client.post("/v1/messages", json=message_body(tenant, "no data", channel="open"))
    assert clean.status_code == 200
    sealed = await client.post("/v1/messages", json=message_body(tenant, email, channel="sealed"))
    assert sealed.status_code == 200
    assert sealed.json()["content"] == email
    scrubbed = await client.post(
        "/v1/messages", json=message_body(tenant, email, channel="scrubbed")
    )
    assert scrubbed.status_code == 200
    assert "ada@example.com" not in scrubbed.json()["content"]
    closed = await client.post("/v1/messages", json=message_body(tenant, email, channel="closed"))
    assert closed.status_code == 422
    assert closed.json()["error"] == "pii_rejected"
    # An edit that brings personal data to the open channel is refused too.
    edit = await client.patch(
        f"/v1/messages/{clean.json()['message_id']}",
        params={"tenant_id": tenant}, json={"content": email},
    )
    assert edit.status_code == 422
    assert edit.json()["error"] == "encryption_required"
    assert await count_rows(db_engine, tenant) == 3


async def day_bytes(engine: AsyncEngine, tenant: str, channel: str, user: str) -> int:
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT bytes FROM channel_usage WHERE tenant_id = :t AND channel = :c "
                 "AND user_id = :u"),
            {"t": tenant, "c": channel, "u": user},
        )
        return int(result.scalar_one())


async def test_the_daily_quota_is_exact_under_twenty_concurrent_writers(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine, tenant: str
) -> None:
    settings = settings_factory(db_pool_size=10, db_max_overflow=12)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        await put_channel(client, tenant, "working", quota_bytes=100)
        first = await client.post("/v1/messages", json=message_body(
            tenant, "x" * 90, channel="working", user_id="ada"
        ))
        assert first.status_code == 200
        answers = await asyncio.gather(*(
            client.post("/v1/messages", json=message_body(
                tenant, f"racing {n:03d}", channel="working", user_id="ada"
            ))
            for n in range(20)
        ))
        # Another user, and the same user on another channel, have budgets of their own.
        other = await client.post("/v1/messages", json=message_body(
            tenant, "y" * 90, channel="working", user_id="bob"
        ))
        assert other.status_code == 200
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] + [429] * 19
    refused = next(answer.json() for answer in answers if answer.status_code == 429)
    assert refused["error"] == "quota_exceeded"
    detail = refused["detail"]
    today = datetime.now(UTC).date()
    assert (detail["window"], detail["limit"], detail["current"], detail["requested"]) == (
        "day", 100, 100, 10,
    )
    assert detail["resets_at"] == f"{(today + timedelta(days=1)).isoformat()}T00:00:00+00:00"
    assert detail["channel"] == "working"
    assert detail["user_id"] == "ada"
    assert await day_bytes(db_engine, tenant, "working", "ada") == 100
    assert await count_rows(db_engine, tenant) == 3


async def test_a_batch_past_the_quota_stores_nothing(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await put_channel(client, tenant, "working", quota_bytes=10)
    batch = await client.post("/v1/messages/batch", json={"tenant_id": tenant, "messages": [
        {"conversation_id": "c", "role": "user", "content": "123456", "channel": "working"},
        {"conversation_id": "c", "role": "user", "content": "78901", "channel": "working"},
    ]})
    assert batch.status_code == 429
    assert batch.json()["detail"]["requested"] == 11
    assert await count_rows(db_engine, tenant) == 0
    fits = await client.post("/v1/messages/batch", json={"tenant_id": tenant, "messages": [
        {"conversation_id": "c", "role": "user", "content": "12345", "channel": "working"},
        {"conversation_id": "c", "role": "user", "content": "67890", "channel": "working"},
    ]})
    assert fits.status_code == 200
    assert await day_bytes(db_engine, tenant, "working", "") == 10
