"""Summaries: one current summary per conversation, made by the worker or on request, replaced."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.consolidation.service import Distillers
from memory_layer.consolidation.worker import ConsolidationWorker
from tests.consolidation.support import say, worker_of
from tests.fixtures.app import AppClient

CHAT = [
    ("user", "I am planning a trip to Japan in April with my sister."),
    ("assistant", "Lovely! Cherry blossom season. Tokyo and Kyoto are the classic pair."),
    ("user", "We want Kyoto for the temples and Osaka for the food."),
    ("assistant", "Kyoto temples: Kinkaku-ji, Fushimi Inari. Osaka: Dotonbori street food."),
    ("user", "ok"),
    ("user", "Remember that my sister is vegetarian."),
    ("assistant", "Noted: vegetarian options in Kyoto include shojin ryori temple cuisine."),
    ("user", "thanks!"),
]


def every(worker: ConsolidationWorker, turns: int) -> ConsolidationWorker:
    """The worker with MEMORY_SUMMARY_EVERY_TURNS set to `turns`."""
    settings = worker.settings.model_copy(update={"summary_every_turns": turns, "summary_turns": 3})
    worker.settings = settings
    worker.distillers = Distillers(worker.distillers.provider, worker.distillers.embedder,
                                   settings, worker.distillers.metrics)
    return worker


async def summaries(engine: AsyncEngine, tenant: str, conversation: str = "c1") -> list[Any]:
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT id, content, covers_through, source_message_ids, user_id, "
                 "embedding_status FROM messages "
                 "WHERE tenant_id = :t AND conversation_id = :c AND kind = 'summary'"),
            {"t": tenant, "c": conversation},
        )
        return list(result)


async def created_at(engine: AsyncEngine, tenant: str, message_id: str) -> object:
    async with engine.connect() as connection:
        return (await connection.execute(
            text("SELECT created_at FROM messages WHERE tenant_id = :t AND id = :id"),
            {"t": tenant, "id": message_id},
        )).scalar_one()


async def test_the_worker_summarises_after_n_turns_and_replaces_the_summary(
    client: AppClient, tenant: str, db_engine: AsyncEngine
) -> None:
    worker = every(worker_of(client), 6)
    ids = [await say(client, tenant, content, role=role) for role, content in CHAT[:5]]
    await worker.drain(tenant)
    assert await summaries(db_engine, tenant) == []  # 5 turns < 6

    ids.append(await say(client, tenant, CHAT[5][1]))
    await worker.drain(tenant)
    [first] = await summaries(db_engine, tenant)
    assert first.covers_through == await created_at(db_engine, tenant, ids[-1])
    assert [str(i) for i in first.source_message_ids] == ids
    assert first.user_id == "ana"
    assert first.embedding_status == "ready"
    lines = first.content.splitlines()
    assert len(lines) == 3  # MEMORY_SUMMARY_TURNS
    assert all(line.startswith(("user: ", "assistant: ")) for line in lines)
    assert "user: ok" not in lines  # a bare pleasantry is never the point of a conversation

    for role, content in CHAT[6:] + CHAT[:4]:
        ids.append(await say(client, tenant, content, role=role))
    await worker.drain(tenant)
    [second] = await summaries(db_engine, tenant)
    assert second.id == first.id  # replaced in place, not duplicated
    assert second.covers_through == await created_at(db_engine, tenant, ids[-1])
    assert [str(i) for i in second.source_message_ids] == ids


async def test_summarize_on_request(client: AppClient, tenant: str, db_engine: AsyncEngine) -> None:
    ids = [await say(client, tenant, content, role=role) for role, content in CHAT[:3]]
    response = await client.post("/v1/conversations/c1/summarize", params={"tenant_id": tenant})
    assert response.status_code == 200, response.text
    made = response.json()
    assert made["updated"] is True
    assert made["conversation_id"] == "c1"
    assert made["source_message_ids"] == ids
    assert made["content"].count("\n") == 2  # three turns, each quoted

    again = await client.post("/v1/conversations/c1/summarize", params={"tenant_id": tenant})
    assert again.json()["updated"] is False
    assert again.json()["summary_id"] == made["summary_id"]

    await say(client, tenant, CHAT[3][1], role="assistant")
    third = await client.post("/v1/conversations/c1/summarize", params={"tenant_id": tenant})
    assert third.json()["updated"] is True
    assert third.json()["summary_id"] == made["summary_id"]
    assert len(await summaries(db_engine, tenant)) == 1

    # The newest summary-kind message of the conversation is the current summary.
    history = await client.get("/v1/conversations/c1/messages",
                               params={"tenant_id": tenant, "kind": "summary"})
    [summary] = history.json()["items"]
    assert summary["content"] == third.json()["content"]
    assert summary["covers_through"] == third.json()["covers_through"]


async def test_summarize_unknown_or_disabled(client: AppClient, tenant: str) -> None:
    missing = await client.post("/v1/conversations/nope/summarize", params={"tenant_id": tenant})
    assert missing.status_code == 404
    assert missing.json()["error"] == "conversation_not_found"
    await say(client, tenant, "hello there")
    await client.put(f"/v1/admin/tenants/{tenant}/policy", json={"summarize": False})
    refused = await client.post("/v1/conversations/c1/summarize", params={"tenant_id": tenant})
    assert refused.status_code == 409
    assert refused.json()["error"] == "summaries_disabled"
