"""Retention runs follow each tenant's policy: its own ages, per kind, and the defaults for the
others."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import AppClient
from tests.fixtures.rows import insert_rows, message_row
from tests.fixtures.tenants import new_tenant
from tests.policies.helpers import set_policy


async def states(engine: AsyncEngine, tenant: str) -> dict[str, str]:
    """content -> archived | live, for the tenant's stored rows."""
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT content, archived_at IS NOT NULL AS archived FROM messages WHERE tenant_id = :t"),
            {"t": tenant},
        )
        return {row.content: "archived" if row.archived else "live" for row in result}


async def seed(engine: AsyncEngine, tenant: str) -> None:
    old = datetime.now(UTC) - timedelta(days=100)
    recent = datetime.now(UTC) - timedelta(days=40)
    rows = [
        message_row(tenant, "c", old, content="old chat"),
        message_row(tenant, "c", old, kind="fact", content="old fact"),
        message_row(tenant, "c", recent, content="recent chat"),
        message_row(tenant, "c", recent, kind="summary", content="recent summary"),
    ]
    rows[0]["importance"] = 0.1
    await insert_rows(engine, rows)


async def test_each_tenant_follows_its_own_policy(client: AppClient, db_engine: AsyncEngine) -> None:
    strict, default = new_tenant(), new_tenant()
    await seed(db_engine, strict)
    await seed(db_engine, default)
    await set_policy(
        client, strict, delete_after_days=60,
        retention_by_kind={"fact": {"delete_after_days": 0}, "summary": {"delete_after_days": 30}},
    )

    dry = await client.post("/v1/admin/retention/run", json={"tenant_id": strict, "dry_run": True})
    assert dry.json()["matched"] == 2
    assert dry.json()["by_policy"] is True
    runs = [
        (await client.post("/v1/admin/retention/run", json={"tenant_id": tenant})).json()
        for tenant in (strict, default)
    ]
    # strict: chat older than 60 days and the summary older than 30 deleted; the fact never is,
    # and at importance 0.5 it is not below the archiving threshold (0.5).
    assert (runs[0]["deleted"], runs[0]["archived"]) == (2, 0)
    assert await states(db_engine, strict) == {"old fact": "live", "recent chat": "live"}
    # default: archive after 90 days, only what is less important than 0.5.
    assert (runs[1]["deleted"], runs[1]["archived"]) == (0, 1)
    assert await states(db_engine, default) == {
        "old chat": "archived", "old fact": "live", "recent chat": "live", "recent summary": "live",
    }


async def test_an_explicit_rule_overrides_the_policies(
    client: AppClient, db_engine: AsyncEngine
) -> None:
    tenant = new_tenant()
    await seed(db_engine, tenant)
    await set_policy(client, tenant, archive_after_days=0, delete_after_days=0)
    by_policy = await client.post("/v1/admin/retention/run", json={"tenant_id": tenant})
    assert by_policy.json()["matched"] == 0
    rule = await client.post(
        "/v1/admin/retention/run",
        json={"tenant_id": tenant, "older_than_days": 30, "importance_below": 1, "action": "delete"},
    )
    assert (rule.json()["by_policy"], rule.json()["deleted"]) == (False, 4)
