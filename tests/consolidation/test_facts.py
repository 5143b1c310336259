"""Facts distilled by the worker: provenance, deduplication, supersession, and where they show."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.consolidation.providers.base import Turn
from memory_layer.consolidation.providers.extractive import ExtractiveProvider
from memory_layer.consolidation.rules import extract_facts
from memory_layer.consolidation.service import Distillers, Stated, store_facts
from tests.consolidation.support import facts, say, worker_of
from tests.fixtures.app import AppClient


async def test_user_turns_become_facts_with_provenance(client: AppClient, tenant: str) -> None:
    said = await say(client, tenant, "Hi! My name is Ana and I live in Porto.")
    await say(client, tenant, "Nice to meet you Ana, I live in the cloud.", role="assistant",
              user_id=None)
    await say(client, tenant, "I live in Lisbon", user_id=None)  # nobody to attach it to

    assert await worker_of(client).drain(tenant) == 3

    profile = await facts(client, tenant)
    assert sorted(f["content"] for f in profile) == [
        "The user lives in Porto.", "The user's name is Ana."
    ]
    for fact in profile:
        assert fact["user_id"] == "ana"
        assert fact["source_message_ids"] == [said]
        assert fact["conversation_id"] == "c1"
        assert 0 < fact["confidence"] <= 1
        assert fact["superseded_by"] is None
        assert fact["valid_until"] is None
        assert fact["embedding_status"] == "ready"
    assert {f["subject"] for f in profile} == {"name", "residence"}


async def test_a_repeated_fact_is_not_stored_again(client: AppClient, tenant: str) -> None:
    first = await say(client, tenant, "I live in Porto.")
    again = await say(client, tenant, "As I said, I live in Porto!", conversation_id="c2")
    await worker_of(client).drain(tenant)

    [fact] = await facts(client, tenant)
    assert fact["content"] == "The user lives in Porto."
    assert fact["source_message_ids"] == [first, again]


async def test_a_contradiction_supersedes_the_old_fact(
    client: AppClient, tenant: str, db_engine: AsyncEngine
) -> None:
    await say(client, tenant, "I live in Porto and I love coffee.")
    moved = await say(client, tenant, "Big news: I moved to Berlin!")
    await worker_of(client).drain(tenant)

    current = await facts(client, tenant)
    assert sorted(f["content"] for f in current) == [
        "The user likes coffee.", "The user lives in Berlin."
    ]
    berlin = next(f for f in current if f["subject"] == "residence")
    everything = await facts(client, tenant, include_superseded="true")
    [porto] = [f for f in everything if f["content"] == "The user lives in Porto."]
    assert porto["superseded_by"] == berlin["fact_id"]
    async with db_engine.connect() as connection:
        stated = (await connection.execute(
            text("SELECT created_at FROM messages WHERE tenant_id = :t AND id = :id"),
            {"t": tenant, "id": moved},
        )).scalar_one()
    assert datetime.fromisoformat(porto["valid_until"]) == stated
    assert datetime.fromisoformat(berlin["stated_at"]) == stated

    # Gone from default search and the conversation's history; there when asked for.
    def contents(response_items: list[dict[str, object]]) -> set[object]:
        return {item["content"] for item in response_items}

    search: dict[str, str | int] = {
        "tenant_id": tenant, "query": "where does the user live", "kind": "fact", "top_k": 20
    }
    found = await client.get("/v1/memory/search", params=search)
    assert "The user lives in Porto." not in contents(found.json()["items"])
    assert "The user lives in Berlin." in contents(found.json()["items"])
    found = await client.get("/v1/memory/search", params={**search, "include_superseded": "true"})
    assert "The user lives in Porto." in contents(found.json()["items"])
    history = await client.get("/v1/conversations/c1/messages", params={"tenant_id": tenant})
    assert "The user lives in Porto." not in contents(history.json()["items"])
    history = await client.get("/v1/conversations/c1/messages",
                               params={"tenant_id": tenant, "include_superseded": "true"})
    assert "The user lives in Porto." in contents(history.json()["items"])
    [read] = [item for item in history.json()["items"] if item["content"].endswith("Porto.")]
    assert read["superseded_by"] == berlin["fact_id"]


async def test_a_late_older_turn_does_not_bring_an_old_value_back(
    client: AppClient, tenant: str
) -> None:
    berlin = await say(client, tenant, "I live in Berlin.")
    await worker_of(client).drain(tenant)
    [current] = await facts(client, tenant)
    # A turn stated before the current value (say, a retry that comes back late).
    older = Turn(id=uuid.uuid4(), role="user", content="I live in Porto.",
                 created_at=datetime.fromisoformat(current["stated_at"]).replace(year=2020))
    state = client.app.state
    distillers = Distillers(ExtractiveProvider(), state.embedder, state.settings, state.metrics)
    [outcome] = await store_facts(
        state.sessionmaker, tenant, "c1", [Stated(older, "ana", extract_facts(older.content))],
        distillers,
    )
    assert outcome.action.value == "none"
    assert [f["content"] for f in await facts(client, tenant)] == ["The user lives in Berlin."]
    assert current["source_message_ids"] == [berlin]


async def test_preferences_and_kinds(client: AppClient, tenant: str) -> None:
    await say(client, tenant, "I prefer window seats over aisle seats.")
    await say(client, tenant, "My name is Ana.")
    await say(client, tenant, "Actually I prefer aisle seats over window seats now.")
    await worker_of(client).drain(tenant)
    preferences = await facts(client, tenant, kind="preference")
    assert [f["content"] for f in preferences] == [
        "The user prefers aisle seats over window seats."
    ]
    assert [f["content"] for f in await facts(client, tenant, kind="fact")] == [
        "The user's name is Ana."
    ]


async def test_facts_are_per_user(client: AppClient, tenant: str) -> None:
    await say(client, tenant, "I live in Porto.", user_id="ana")
    await say(client, tenant, "I live in Oslo.", user_id="bob", conversation_id="c2")
    await worker_of(client).drain(tenant)
    assert [f["content"] for f in await facts(client, tenant, "ana")] == ["The user lives in Porto."]
    assert [f["content"] for f in await facts(client, tenant, "bob")] == ["The user lives in Oslo."]


async def test_the_profile_pages_with_a_cursor(client: AppClient, tenant: str) -> None:
    for food in ("figs", "olives", "plums", "pears", "kiwis"):
        await say(client, tenant, f"I love {food}.")
    await worker_of(client).drain(tenant)
    first = await client.get("/v1/users/ana/facts", params={"tenant_id": tenant, "limit": 3})
    body = first.json()
    assert len(body["items"]) == 3
    assert body["next_cursor"]
    second = await client.get("/v1/users/ana/facts",
                              params={"tenant_id": tenant, "limit": 3, "cursor": body["next_cursor"]})
    rest = second.json()
    assert len(rest["items"]) == 2
    assert rest["next_cursor"] is None
    seen = [f["content"] for f in body["items"] + rest["items"]]
    assert len(set(seen)) == 5
    wrong = await client.get("/v1/users/bob/facts",
                             params={"tenant_id": tenant, "cursor": body["next_cursor"]})
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_cursor"


@pytest.mark.parametrize("switch", ["extract_facts", "summarize"])
async def test_the_tenant_policy_turns_consolidation_off(
    client: AppClient, tenant: str, switch: str, db_engine: AsyncEngine
) -> None:
    response = await client.put(f"/v1/admin/tenants/{tenant}/policy", json={switch: False})
    assert response.status_code == 200, response.text
    assert response.json()["effective"][switch] is False
    for n in range(3):
        await say(client, tenant, f"I live in Porto, turn {n}.")
    worker = worker_of(client)  # with a summary due after 2 turns (the default is 20)
    worker.settings = worker.settings.model_copy(update={"summary_every_turns": 2})
    worker.distillers = Distillers(worker.distillers.provider, worker.distillers.embedder,
                                   worker.settings, worker.distillers.metrics)
    assert await worker.drain(tenant) == 3
    async with db_engine.connect() as connection:
        kinds = (await connection.execute(
            text("SELECT kind, count(*) FROM messages WHERE tenant_id = :t GROUP BY kind"),
            {"t": tenant},
        )).all()
    counts: dict[str, int] = {str(kind): int(n) for kind, n in kinds}
    if switch == "extract_facts":
        assert "fact" not in counts
        assert counts["summary"] == 1
    else:
        assert counts["fact"] == 1
        assert "summary" not in counts
