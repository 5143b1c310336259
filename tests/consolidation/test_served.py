"""Without the client doing anything: the serving process's workers embed, distil and summarise.

A database of its own: the workers of a serving process claim every tenant's turns.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from memory_layer.kit.db.engine import create_engine
from memory_layer.kit.db.migrations import upgrade_to_head
from tests.consolidation.support import facts, say
from tests.fixtures.app import ADMIN_KEY, make_settings, running_client
from tests.fixtures.database import DatabaseServer
from tests.fixtures.tenants import new_tenant
from tests.support.waiting import wait_until


async def test_a_served_conversation_gets_a_profile_and_a_summary(db_server: DatabaseServer) -> None:
    url = db_server.create_database("memory_layer_consolidation_served")
    upgrade_to_head(url, 384)
    settings = make_settings(
        url, worker_enabled=True, async_embeddings=True, worker_batch_wait_ms=0,
        worker_poll_seconds=0.2, consolidation_poll_seconds=0.1, summary_every_turns=4,
    )
    tenant = new_tenant()
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        for role, content in [
            ("user", "Hi, my name is Ana and I live in Porto."),
            ("assistant", "Hello Ana!"),
            ("user", "I love hiking."),
            ("user", "I moved to Berlin last week."),
        ]:
            body: dict[str, Any] = {"tenant_id": tenant, "conversation_id": "c1", "role": role,
                                    "content": content}
            if role == "user":
                body["user_id"] = "ana"
            response = await client.post("/v1/messages", json=body)
            assert response.status_code == 202, response.text

        async def profile_is_current() -> bool:
            contents = sorted(f["content"] for f in await facts(client, tenant))
            return contents == ["The user likes hiking.", "The user lives in Berlin.",
                                "The user's name is Ana."]

        await wait_until(profile_is_current, timeout=30, message="the profile is current")
        await say(client, tenant, "As I said, I love hiking.")

        engine = create_engine(url, pool_size=1, max_overflow=0)

        async def summarised_and_done() -> bool:
            async with engine.connect() as connection:
                row = (await connection.execute(text(
                    "SELECT count(*) FILTER (WHERE kind = 'summary'), "
                    "count(*) FILTER (WHERE consolidation_status = 'pending') "
                    "FROM messages WHERE tenant_id = :t"), {"t": tenant})).one()
            return bool(row[0] == 1 and row[1] == 0)

        await wait_until(summarised_and_done, timeout=30, message="summarised, nothing pending")
        await engine.dispose()
        hiking = [f for f in await facts(client, tenant) if "hiking" in f["content"]]
        assert len(hiking) == 1  # the repetition was not stored again
        assert len(hiking[0]["source_message_ids"]) == 2
