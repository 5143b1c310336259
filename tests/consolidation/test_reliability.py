"""Nothing is lost when the language provider fails; erasure takes derived memories along."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.consolidation.providers.base import FactDraft, LanguageError, Turn
from memory_layer.consolidation.providers.extractive import ExtractiveProvider
from tests.consolidation.support import facts, say, worker_of
from tests.fixtures.app import AppClient


class FailingProvider(ExtractiveProvider):
    """The offline provider, failing every call with `kind` while `failing` is set."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.failing = True
        self.calls = 0

    async def extract(self, turn: Turn) -> list[FactDraft]:
        self.calls += 1
        if self.failing:
            raise LanguageError(f"scripted {self.kind}", kind=self.kind,
                                retryable=self.kind in ("rate_limited", "unavailable"))
        return await super().extract(turn)


async def queue(engine: AsyncEngine, tenant: str) -> list[tuple[str, int, str | None]]:
    async with engine.begin() as connection:
        # Due again now: the back-off is the worker's business, not this test's.
        await connection.execute(
            text("UPDATE messages SET consolidation_next_attempt_at = now() "
                 "WHERE tenant_id = :t AND consolidation_status = 'pending'"), {"t": tenant})
        result = await connection.execute(
            text("SELECT consolidation_status, consolidation_attempts, consolidation_error "
                 "FROM messages WHERE tenant_id = :t AND kind = 'message' ORDER BY created_at"),
            {"t": tenant},
        )
        return [(row[0], row[1], row[2]) for row in result]


async def test_an_outage_loses_nothing_and_spends_no_attempt(
    client: AppClient, tenant: str, db_engine: AsyncEngine
) -> None:
    await say(client, tenant, "I live in Porto.")
    provider = FailingProvider("unavailable")
    worker = worker_of(client, provider)
    for _ in range(3):
        outcome = await worker.run_once(tenant)
        assert (outcome.claimed, outcome.done, outcome.retrying) == (1, 0, 1)
        [(status, attempts, error)] = await queue(db_engine, tenant)
        assert (status, attempts) == ("pending", 0)
        assert error is not None
        assert error.startswith("unavailable: scripted unavailable")
    assert await facts(client, tenant) == []

    provider.failing = False
    assert (await worker.run_once(tenant)).done == 1
    assert [f["content"] for f in await facts(client, tenant)] == ["The user lives in Porto."]
    assert await queue(db_engine, tenant) == [("done", 1, None)]


async def test_a_turn_that_keeps_failing_is_parked_with_its_error(
    client: AppClient, tenant: str, db_engine: AsyncEngine
) -> None:
    await say(client, tenant, "I live in Porto.")
    worker = worker_of(client, FailingProvider("bad_response"))
    worker.settings = worker.settings.model_copy(update={"consolidation_max_attempts": 2})
    assert (await worker.run_once(tenant)).retrying == 1
    await queue(db_engine, tenant)
    outcome = await worker.run_once(tenant)
    assert outcome.failed == 1
    [(status, attempts, error)] = await queue(db_engine, tenant)
    assert (status, attempts) == ("failed", 2)
    assert error == "bad_response: scripted bad_response"
    assert (await worker.run_once(tenant)).claimed == 0  # parked, not retried forever


async def test_a_lost_lease_returns_the_turn(
    client: AppClient, tenant: str, db_engine: AsyncEngine
) -> None:
    await say(client, tenant, "I live in Porto.")
    first, second = worker_of(client), worker_of(client)
    async with db_engine.begin() as connection:
        # The first worker claimed the turn and died: its lease has run out.
        await connection.execute(
            text("UPDATE messages SET consolidation_lease_owner = :o, consolidation_attempts = 1, "
                 "consolidation_next_attempt_at = now() - interval '1 second' "
                 "WHERE tenant_id = :t"), {"t": tenant, "o": first.owner})
    assert (await second.run_once(tenant)).done == 1
    assert len(await facts(client, tenant)) == 1


async def test_erasing_a_user_removes_their_facts_and_summaries(
    client: AppClient, tenant: str, db_engine: AsyncEngine
) -> None:
    await say(client, tenant, "I live in Porto and I love figs.", user_id="eve")
    await say(client, tenant, "Noted!", role="assistant", user_id=None)
    # A conversation Eve shares with Bob: its summary quotes her, so it goes too.
    await say(client, tenant, "I prefer trains over planes.", user_id="eve", conversation_id="g")
    await say(client, tenant, "I live in Oslo.", user_id="bob", conversation_id="g")
    await say(client, tenant, "I live in Lima.", user_id="bob", conversation_id="b")
    await worker_of(client).drain(tenant)
    for conversation in ("c1", "g", "b"):
        response = await client.post(f"/v1/conversations/{conversation}/summarize",
                                     params={"tenant_id": tenant})
        assert response.status_code == 200, response.text
    assert len(await facts(client, tenant, "eve")) == 3

    response = await client.delete("/v1/users/eve", params={"tenant_id": tenant})
    assert response.status_code == 200, response.text

    assert await facts(client, tenant, "eve", include_superseded="true") == []
    async with db_engine.connect() as connection:
        left = (await connection.execute(
            text("SELECT kind, conversation_id, content FROM messages WHERE tenant_id = :t "
                 "ORDER BY conversation_id, kind"), {"t": tenant})).all()
    assert [(kind, conversation) for kind, conversation, _ in left] == [
        ("fact", "b"), ("message", "b"), ("summary", "b"),
        ("fact", "g"), ("message", "g"),
    ]
    assert not any("Porto" in content or "trains" in content for _, _, content in left)
