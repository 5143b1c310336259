"""What a stored message costs the database in statements: a write without a quota is one INSERT
that commits on its own (no BEGIN, no COMMIT round trips); with a quota, the usage lock and the
INSERT share one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from tests.fixtures.app import ADMIN_KEY, AppClient, running_client


def log_statements(client: AppClient) -> list[str]:
    """What the app's pooled connections send from now on: each statement SQLAlchemy executes,
    and each BEGIN and COMMIT (the driver sends those itself; its query log sees them)."""
    engine: AsyncEngine = client.app.state.engine
    sent: list[str] = []
    watched: set[int] = set()

    def checkout(dbapi_connection: Any, *_: object) -> None:
        driver = dbapi_connection.driver_connection
        if id(driver) not in watched:
            watched.add(id(driver))
            driver.add_query_logger(lambda logged: sent.append(logged.query.strip().upper()))

    def executed(_connection: Any, _cursor: Any, statement: str, *_: object) -> None:
        sent.append(statement.strip().upper())

    event.listen(engine.sync_engine.pool, "checkout", checkout)
    event.listen(engine.sync_engine, "before_cursor_execute", executed)
    return sent


def transaction_control(sent: list[str]) -> list[str]:
    """BEGIN, COMMIT, ROLLBACK and START TRANSACTION among the statements, by their first word."""
    words = [s.split()[0].rstrip(";") for s in sent]
    return [w for w in words if w in ("BEGIN", "COMMIT", "ROLLBACK", "START")]


def post(tenant: str, content: str) -> dict[str, object]:
    return {"tenant_id": tenant, "conversation_id": "c", "role": "user", "content": content}


async def test_a_write_without_a_quota_is_one_statement_that_commits_itself(
    settings_factory: Callable[..., Settings], tenant: str
) -> None:
    settings = settings_factory(async_embeddings=True)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        sent = log_statements(client)
        stored = await client.post("/v1/messages", json=post(tenant, "one statement"))
        await asyncio.sleep(0.1)  # the driver writes its query log on a later turn of the loop
        assert stored.status_code == 202
        assert len([s for s in sent if s.startswith("INSERT INTO MESSAGES")]) == 1
        assert transaction_control(sent) == []
        # Committed by the time the answer came: another connection reads it.
        read = await client.get(stored.headers["Location"])
        assert read.status_code == 200
        assert read.json()["content"] == "one statement"


async def test_a_write_under_a_quota_keeps_its_transaction(
    settings_factory: Callable[..., Settings], tenant: str
) -> None:
    settings = settings_factory(async_embeddings=True)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        quota = await client.put(f"/v1/admin/tenants/{tenant}/policy", json={"max_messages": 5})
        assert quota.status_code == 200, quota.text
        sent = log_statements(client)
        stored = await client.post("/v1/messages", json=post(tenant, "under a quota"))
        await asyncio.sleep(0.1)
        assert stored.status_code == 202
        assert len([s for s in sent if s.startswith("INSERT INTO MESSAGES")]) == 1
        assert transaction_control(sent) == ["BEGIN", "COMMIT"]
