"""A tenant's PII mode on every write path: detect (kinds stored, filterable), redact (the raw
value reaches neither the database, the embedder nor a log line), reject (422, nothing stored)."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import AppClient
from tests.fixtures.messages import count_rows, message_body, remember
from tests.policies.helpers import set_policy

RAW = "call me on (415) 555-2671 or mail ann.lee@example.com"
REDACTED = "call me on [PHONE] or mail [EMAIL]"


async def stored(engine: AsyncEngine, tenant: str) -> list[dict[str, object]]:
    async with engine.connect() as connection:
        result = await connection.execute(
            text(
                "SELECT content, pii_kinds, embedding::text AS embedding FROM messages "
                "WHERE tenant_id = :t ORDER BY created_at"
            ),
            {"t": tenant},
        )
        return [dict(row._mapping) for row in result]


async def test_redact_stores_and_embeds_only_placeholders(
    client: AppClient, db_engine: AsyncEngine, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await set_policy(client, tenant, pii_mode="redact")
    created = await client.post("/v1/messages", json=message_body(tenant, RAW))
    assert created.json()["content"] == REDACTED
    assert created.json()["pii_kinds"] == ["email", "phone"]
    batch = await client.post("/v1/messages/batch", json={"tenant_id": tenant, "messages": [
        {"conversation_id": "c", "role": "user", "content": RAW}
    ]})
    assert batch.status_code == 200
    message_id = await remember(client, tenant, "nothing personal")
    edited = await client.patch(
        f"/v1/messages/{message_id}", params={"tenant_id": tenant},
        json={"content": "my card is 4111 1111 1111 1111"},
    )
    assert edited.json()["content"] == "my card is [CARD]"
    assert edited.json()["pii_kinds"] == ["payment_card"]

    rows = await stored(db_engine, tenant)
    assert [row["content"] for row in rows] == [REDACTED, REDACTED, "my card is [CARD]"]
    # The vector is the redacted text's: the provider never saw the raw one.
    expected, raw = await client.embedder.embed_documents([REDACTED, RAW])
    assert json.loads(str(rows[0]["embedding"])) == pytest.approx(expected, abs=1e-6)
    assert json.loads(str(rows[0]["embedding"])) != pytest.approx(raw, abs=1e-6)
    for secret in ("555-2671", "ann.lee", "4111 1111"):
        assert all(secret not in record.getMessage() for record in caplog.records)


async def test_detect_records_the_kinds_and_they_filter_search_and_history(
    client: AppClient, tenant: str
) -> None:
    await set_policy(client, tenant, pii_mode="detect")
    personal = await remember(client, tenant, f"about the lease: {RAW}")
    plain = await remember(client, tenant, "about the lease: nothing to add")
    read = await client.get(f"/v1/messages/{personal}", params={"tenant_id": tenant})
    assert read.json()["content"].endswith(RAW)
    assert read.json()["pii_kinds"] == ["email", "phone"]

    async def found(**filters: str) -> set[str]:
        response = await client.post(
            "/v1/memory/search", json={"tenant_id": tenant, "query": "lease", **filters}
        )
        return {item["message_id"] for item in response.json()["items"]}

    assert await found() == {personal, plain}
    assert await found(pii_kind="phone") == {personal}
    assert await found(pii_kind="iban") == set()
    history = await client.get(
        "/v1/conversations/c1/messages", params={"tenant_id": tenant, "pii_kind": "email"}
    )
    assert [item["message_id"] for item in history.json()["items"]] == [personal]
    bad = await client.get("/v1/conversations/c1/messages", params={"tenant_id": tenant, "pii_kind": "dna"})
    assert bad.status_code == 422


async def test_reject_refuses_the_write_and_names_the_kinds(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await set_policy(client, tenant, pii_mode="reject")
    one = await client.post("/v1/messages", json=message_body(tenant, RAW))
    assert (one.status_code, one.json()["error"]) == (422, "pii_rejected")
    assert one.json()["detail"]["kinds"] == ["email", "phone"]
    assert "ann.lee" not in one.text
    batch = await client.post("/v1/messages/batch", json={"tenant_id": tenant, "messages": [
        {"conversation_id": "c", "role": "user", "content": "fine"},
        {"conversation_id": "c", "role": "user", "content": "SSN 219-44-1234"},
    ]})
    assert batch.status_code == 422
    assert batch.json()["detail"]["where"] == "messages[1]"
    assert batch.json()["detail"]["kinds"] == ["us_ssn"]
    line = json.dumps({
        "message_id": "00000000-0000-4000-8000-0000000000aa", "conversation_id": "c",
        "role": "user", "content": "from 10.1.2.3", "importance": 0.5,
        "created_at": "2025-01-01T00:00:00+00:00",
    })
    imported = await client.post(
        "/v1/import", params={"tenant_id": tenant}, content=line.encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert (imported.status_code, imported.json()["error"]) == (422, "pii_rejected")
    assert "10.1.2.3" not in imported.text
    assert await count_rows(db_engine, tenant) == 0


async def test_an_import_into_a_redacting_tenant_is_redacted(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await set_policy(client, tenant, pii_mode="redact")
    line = json.dumps({
        "message_id": "00000000-0000-4000-8000-0000000000bb", "conversation_id": "c",
        "role": "user", "content": RAW, "importance": 0.5,
        "created_at": "2025-01-01T00:00:00+00:00",
    })
    imported = await client.post(
        "/v1/import", params={"tenant_id": tenant}, content=line.encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert imported.status_code == 200, imported.text
    rows = await stored(db_engine, tenant)
    assert [(row["content"], row["pii_kinds"]) for row in rows] == [(REDACTED, ["email", "phone"])]
