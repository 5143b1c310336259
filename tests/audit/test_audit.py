"""The audit log: what each action records (never content), its listing, and a table that the
database itself keeps append-only."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.audit import service as audit
from memory_layer.kit.db.engine import create_sessionmaker
from tests.fixtures.app import AppClient
from tests.fixtures.messages import remember
from tests.fixtures.tenants import new_tenant, tenant_key

SECRET = "my passport number is X1234567"


async def entries(client: AppClient, **filters: Any) -> list[dict[str, Any]]:
    response = await client.get("/v1/admin/audit", params=filters)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_actions_are_recorded_with_actor_target_counts_and_request_id(
    client: AppClient, tenant: str
) -> None:
    created = await client.post(
        "/v1/admin/keys", json={"name": "ops", "scopes": ["read", "write", "admin"]}
    )
    operator = {"X-API-Key": created.json()["api_key"]}
    message_id = await remember(client, tenant, SECRET, conversation_id="c1", user_id="eve")
    await remember(client, tenant, "another turn", conversation_id="c2")

    deleted = await client.delete(
        f"/v1/messages/{message_id}",
        params={"tenant_id": tenant},
        headers={**operator, "X-Request-ID": "req-42"},
    )
    assert deleted.status_code == 200
    conversation_deleted = await client.delete(
        "/v1/conversations/c2", params={"tenant_id": tenant}, headers=operator
    )
    assert conversation_deleted.status_code == 200
    await remember(client, tenant, SECRET, conversation_id="c3", user_id="eve")
    erased = await client.delete("/v1/users/eve", params={"tenant_id": tenant}, headers=operator)
    assert erased.status_code == 200
    requeued = await client.post(
        "/v1/admin/embeddings/requeue", json={"tenant_id": tenant}, headers=operator
    )
    assert requeued.status_code == 200
    line = {"message_id": "00000000-0000-4000-8000-000000000001", "conversation_id": "c9",
            "role": "user", "content": SECRET, "importance": 0.9,
            "created_at": "2026-01-01T00:00:00Z"}
    imported = await client.post(
        "/v1/import", params={"tenant_id": tenant}, content=json.dumps(line) + "\n",
        headers={**operator, "Content-Type": "application/x-ndjson"},
    )
    assert imported.status_code == 200, imported.text
    ran = await client.post(
        "/v1/admin/retention/run", json={"tenant_id": tenant}, headers=operator
    )
    assert ran.status_code == 200, ran.text

    log = await entries(client, tenant_id=tenant)
    by_action = {entry["action"]: entry for entry in log}
    assert [entry["action"] for entry in log] == [
        "retention.run", "import.completed", "embeddings.requeued", "user.erased",
        "conversation.deleted", "message.deleted",
    ]
    assert {entry["actor"] for entry in log} == {f"key:{created.json()['id']}"}
    assert {entry["key_id"] for entry in log} == {created.json()["id"]}
    removed = by_action["message.deleted"]
    assert removed["target"] == f"message:{message_id}"
    assert removed["counts"] == {"messages": 1}
    assert removed["request_id"] == "req-42"
    # No X-Request-ID sent: the id the service generated and answered with is the one recorded.
    generated = conversation_deleted.headers["X-Request-ID"]
    assert generated not in ("", "req-42")
    assert by_action["conversation.deleted"]["request_id"] == generated
    assert by_action["conversation.deleted"]["counts"] == {
        "messages": 1, "conversation_states": 0, "events": 0
    }
    assert by_action["user.erased"]["target"] == "user:eve"
    assert by_action["user.erased"]["counts"]["user_messages"] == 1
    assert by_action["import.completed"]["counts"]["stored"] == 1
    assert "deleted" in by_action["retention.run"]["counts"]
    assert SECRET not in json.dumps(log)
    keys = await entries(client, action="key.created", since=log[-1]["occurred_at"][:10] + "T00:00:00Z")
    assert f"key:{created.json()['id']}" in {entry["target"] for entry in keys}


async def test_a_failed_action_records_nothing(client: AppClient, tenant: str) -> None:
    missing = await client.delete(
        "/v1/messages/00000000-0000-4000-8000-000000000000", params={"tenant_id": tenant}
    )
    assert missing.status_code == 404
    assert await entries(client, tenant_id=tenant) == []


async def test_listing_filters_and_pages(client: AppClient, tenant: str) -> None:
    for number in range(3):
        await remember(client, tenant, f"turn {number}", conversation_id=f"c{number}")
        await client.delete(f"/v1/conversations/c{number}", params={"tenant_id": tenant})
    other = new_tenant()
    await remember(client, other, "elsewhere", conversation_id="c0")
    await client.delete("/v1/conversations/c0", params={"tenant_id": other})

    first = await client.get("/v1/admin/audit", params={"tenant_id": tenant, "limit": 2})
    page = first.json()
    assert len(page["items"]) == 2
    rest = await client.get(
        "/v1/admin/audit", params={"tenant_id": tenant, "limit": 2, "cursor": page["next_cursor"]}
    )
    targets = [item["target"] for item in page["items"] + rest.json()["items"]]
    assert targets == ["conversation:c2", "conversation:c1", "conversation:c0"]
    assert rest.json()["next_cursor"] is None
    # A cursor belongs to its filters.
    crossed = await client.get(
        "/v1/admin/audit", params={"tenant_id": other, "cursor": page["next_cursor"]}
    )
    assert crossed.status_code == 400
    assert await entries(client, tenant_id=tenant, action="message.deleted") == []
    future = await client.get("/v1/admin/audit", params={"since": "2999-01-01T00:00:00Z"})
    assert future.json()["items"] == []
    bad = await client.get("/v1/admin/audit", params={"action": "nonsense"})
    assert bad.status_code == 422


async def test_tenant_keys_cannot_read_the_log(
    client: AppClient, db_engine: AsyncEngine
) -> None:
    mine, theirs = new_tenant(), new_tenant()
    for tenant in (mine, theirs):
        key = await tenant_key(db_engine, tenant)
        for params in ({}, {"tenant_id": tenant}):
            response = await client.get("/v1/admin/audit", params=params, headers={"X-API-Key": key})
            assert response.status_code == 403
            assert response.json()["error"] == "insufficient_scope"


async def insert_event(engine: AsyncEngine, tenant: str, age_days: float) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO audit_events (id, occurred_at, tenant_id, action, actor) VALUES "
                "(gen_random_uuid(), now() - make_interval(secs => :age), :t, 'key.created', 't')"
            ),
            {"age": age_days * 86400, "t": tenant},
        )


async def count_events(engine: AsyncEngine, tenant: str) -> int:
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT count(*) FROM audit_events WHERE tenant_id = :t"), {"t": tenant}
        )
        return int(result.scalar_one())


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET actor = 'someone else' WHERE tenant_id = :t",
        "DELETE FROM audit_events WHERE tenant_id = :t",
        "TRUNCATE audit_events",
    ],
)
async def test_the_database_refuses_to_change_the_log(
    db_engine: AsyncEngine, tenant: str, statement: str
) -> None:
    await insert_event(db_engine, tenant, age_days=30)
    with pytest.raises(DBAPIError, match="append-only"):
        async with db_engine.begin() as connection:
            await connection.execute(text(statement), {"t": tenant})
    assert await count_events(db_engine, tenant) == 1


async def test_only_the_logs_own_retention_deletes_and_only_old_entries(
    db_engine: AsyncEngine, tenant: str
) -> None:
    await insert_event(db_engine, tenant, age_days=30)
    await insert_event(db_engine, tenant, age_days=2)
    # Declaring a horizon does not let a young entry go.
    async with db_engine.connect() as connection:
        await connection.execute(text("SET LOCAL memory.audit_retention_days = '10'"))
        with pytest.raises(DBAPIError, match="append-only"):
            await connection.execute(
                text("DELETE FROM audit_events WHERE tenant_id = :t"), {"t": tenant}
            )
        await connection.rollback()
    async with create_sessionmaker(db_engine).begin() as session:
        assert await audit.purge_expired(session, 0) == 0
        deleted = await audit.purge_expired(session, 10)
    assert deleted >= 1
    assert await count_events(db_engine, tenant) == 1
    # The horizon was transaction-local: a later plain DELETE is refused again.
    with pytest.raises(DBAPIError, match="append-only"):
        async with db_engine.begin() as connection:
            await connection.execute(
                text("DELETE FROM audit_events WHERE tenant_id = :t"), {"t": tenant}
            )


async def test_a_policy_change_is_audited_with_the_fields_it_overrides(
    client: AppClient, tenant: str
) -> None:
    changed = await client.put(
        f"/v1/admin/tenants/{tenant}/policy", json={"max_messages": 10, "pii_mode": "redact"}
    )
    assert changed.status_code == 200, changed.text
    [entry] = await entries(client, tenant_id=tenant, action="policy.updated")
    assert entry["target"] == f"tenant:{tenant}"
    assert entry["counts"] == {"fields_overridden": 2}
