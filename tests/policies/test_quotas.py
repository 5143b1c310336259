"""Quotas on messages and content bytes: 409 quota_exceeded naming the quota, its limit and the
use; nothing written; exact under concurrency; freed by deletes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from tests.fixtures.app import ADMIN_KEY, AppClient, running_client
from tests.fixtures.messages import count_rows, message_body, remember
from tests.policies.helpers import set_policy


async def usage(engine: AsyncEngine, tenant: str) -> tuple[int, int]:
    async with engine.connect() as connection:
        row = (await connection.execute(
            text("SELECT messages, content_bytes FROM tenant_usage WHERE tenant_id = :t"),
            {"t": tenant},
        )).one()
    return int(row.messages), int(row.content_bytes)


async def test_twenty_writers_one_below_the_quota_store_exactly_one_more(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine, tenant: str
) -> None:
    settings = settings_factory(db_pool_size=10, db_max_overflow=12)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        await set_policy(client, tenant, max_messages=5)
        for n in range(4):
            await remember(client, tenant, f"note {n}")
        answers = await asyncio.gather(*(
            client.post("/v1/messages", json=message_body(tenant, f"racing {n}"))
            for n in range(20)
        ))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] + [409] * 19
    refused = next(answer.json() for answer in answers if answer.status_code == 409)
    assert refused["error"] == "quota_exceeded"
    assert {key: refused["detail"][key] for key in ("quota", "limit", "current", "requested")} == {
        "quota": "max_messages", "limit": 5, "current": 5, "requested": 1,
    }
    assert await count_rows(db_engine, tenant) == 5
    assert (await usage(db_engine, tenant))[0] == 5


async def test_content_bytes_quota_counts_utf8_bytes_and_edits(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await set_policy(client, tenant, max_content_bytes=20)
    first = await remember(client, tenant, "héllo wörld")  # 13 bytes
    over = await client.post("/v1/messages", json=message_body(tenant, "eight by"))
    assert over.status_code == 409
    assert over.json()["detail"]["quota"] == "max_content_bytes"
    assert (over.json()["detail"]["current"], over.json()["detail"]["requested"]) == (13, 8)
    grown = await client.patch(
        f"/v1/messages/{first}", params={"tenant_id": tenant},
        json={"content": "héllo wörld, and more"},
    )
    assert grown.status_code == 409
    shrunk = await client.patch(
        f"/v1/messages/{first}", params={"tenant_id": tenant}, json={"content": "hi"}
    )
    assert shrunk.status_code == 200
    assert await usage(db_engine, tenant) == (1, 2)
    await remember(client, tenant, "eight by")
    assert await usage(db_engine, tenant) == (2, 10)


async def test_a_batch_or_an_import_past_the_quota_writes_nothing(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await set_policy(client, tenant, max_messages=3)
    message_id = await remember(client, tenant, "one")
    items = [{"conversation_id": "c", "role": "user", "content": f"m{n}"} for n in range(3)]
    batch = await client.post("/v1/messages/batch", json={"tenant_id": tenant, "messages": items})
    assert (batch.status_code, batch.json()["error"]) == (409, "quota_exceeded")
    assert batch.json()["detail"]["requested"] == 3
    assert await count_rows(db_engine, tenant) == 1

    lines = [
        json.dumps({
            "message_id": f"00000000-0000-4000-8000-00000000000{n}", "conversation_id": "c",
            "role": "user", "content": f"imported {n}", "importance": 0.5,
            "created_at": "2025-01-01T00:00:00+00:00",
        })
        for n in range(3)
    ]
    imported = await client.post(
        "/v1/import", params={"tenant_id": tenant}, content="\n".join(lines).encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert (imported.status_code, imported.json()["error"]) == (409, "quota_exceeded")
    assert await count_rows(db_engine, tenant) == 1

    deleted = await client.delete(f"/v1/messages/{message_id}", params={"tenant_id": tenant})
    assert deleted.status_code == 200
    batch = await client.post("/v1/messages/batch", json={"tenant_id": tenant, "messages": items})
    assert batch.status_code == 200
    assert await usage(db_engine, tenant) == (3, 6)
