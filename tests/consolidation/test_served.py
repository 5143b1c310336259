"""Without the client doing anything: the serving process's workers embed, distil and summarise.

A database of its own: the workers of a serving process claim every tenant's turns.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from memory_layer.consolidation.providers.extractive import ExtractiveProvider
from memory_layer.consolidation.service import Distillers
from memory_layer.consolidation.worker import ConsolidationWorker
from memory_layer.embeddings.providers.fake import FakeEmbeddingProvider
from memory_layer.kit.db.engine import create_engine
from memory_layer.kit.db.migrations import upgrade_to_head
from memory_layer.kit.observability.metrics import Metrics
from memory_layer.kit.observability.requests import RequestActivity
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


def test_a_busy_process_puts_consolidation_off_for_a_bounded_time() -> None:
    """Inside serve the worker starts a batch once no request was served for
    MEMORY_CONSOLIDATION_IDLE_MS, and while requests keep coming, no later than
    MEMORY_CONSOLIDATION_MAX_DEFER_SECONDS; a worker with no requests to yield to never waits."""
    now = [100.0]
    activity = RequestActivity(clock=lambda: now[0])
    settings = make_settings("postgresql+asyncpg://unused/unused", consolidation_idle_ms=1_000,
                             consolidation_max_defer_seconds=30)
    distillers = Distillers(ExtractiveProvider(), FakeEmbeddingProvider(384), settings, Metrics())
    worker = ConsolidationWorker(async_sessionmaker(), distillers, activity=activity)

    assert worker.seconds_until_quiet() == 1.0  # a request just ended (start-up counts as one)
    activity.begin()  # a request is being served
    now[0] += 10
    assert worker.seconds_until_quiet() == 1.0
    activity.end()
    now[0] += 0.4
    assert 0.59 < worker.seconds_until_quiet() < 0.61  # the rest of the quiet second
    now[0] += 0.6
    assert worker.seconds_until_quiet() == 0.0  # quiet: it runs
    activity.begin()
    now[0] += 19.1  # 30.1 s after the work was first put off, the queue never drained
    assert worker.seconds_until_quiet() == 0.0  # overdue: it runs although requests keep coming
    activity.end()

    alone = ConsolidationWorker(async_sessionmaker(), distillers)
    assert alone.seconds_until_quiet() == 0.0
    never = ConsolidationWorker(
        async_sessionmaker(),
        Distillers(ExtractiveProvider(), FakeEmbeddingProvider(384), make_settings(
            "postgresql+asyncpg://unused/unused", consolidation_idle_ms=0), Metrics()),
        activity=activity,
    )
    activity.begin()
    assert never.seconds_until_quiet() == 0.0
