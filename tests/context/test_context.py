"""POST /v1/context: the parts, the defaults, the walls, and the budget held for many budgets."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from memory_layer.embeddings.providers.base import EmbeddingError
from memory_layer.kit import tokens
from tests.fixtures.app import AppClient, running_client
from tests.fixtures.messages import remember
from tests.fixtures.rows import insert_rows, message_row
from tests.fixtures.tenants import new_tenant, tenant_key

USER = "ana"
CONVERSATION = "trip"
# Turns of the conversation, oldest first: an hour ago, one a minute.
TURNS = [
    ("user", "Hi, I want to plan a trip to Lisbon in May."),
    ("assistant", "Lisbon in May is lovely. How many days will you stay?"),
    ("user", "Five days, flying from Berlin."),
    ("assistant", "Noted: five days from Berlin. Any food constraints?"),
    ("user", "Which restaurants would suit my diet?"),
]


def ago(minutes: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


async def seed(client: httpx.AsyncClient, tenant: str) -> dict[str, str]:
    """A conversation with a state, a summary and five turns; the user's facts and preferences
    in another conversation; another user's fact. The ids by name."""
    ids: dict[str, str] = {}
    for index, (role, content) in enumerate(TURNS):
        ids[f"turn{index}"] = await remember(
            client, tenant, content, conversation_id=CONVERSATION, role=role,
            user_id=USER if role == "user" else None, created_at=ago(60 - index),
        )
    ids["summary"] = await remember(
        client, tenant, "Ana plans five days in Lisbon in May, flying from Berlin.",
        conversation_id=CONVERSATION, role="system", kind="summary", created_at=ago(55),
    )
    ids["old_summary"] = await remember(
        client, tenant, "Ana wants to travel.", conversation_id=CONVERSATION, role="system",
        kind="summary", created_at=ago(58),
    )
    ids["fact"] = await remember(
        client, tenant, "Ana is vegetarian and allergic to peanuts, which matters for restaurants.",
        conversation_id="profile", kind="fact", user_id=USER, created_at=ago(600),
    )
    ids["preference"] = await remember(
        client, tenant, "Ana prefers quiet restaurants with a diet friendly menu.",
        conversation_id="profile", kind="preference", user_id=USER, created_at=ago(500),
    )
    ids["old_message"] = await remember(
        client, tenant, "Last year the restaurants in Porto were too loud for me.",
        conversation_id="porto", user_id=USER, created_at=ago(90_000),
    )
    ids["other_user"] = await remember(
        client, tenant, "Bruno loves steak restaurants and has no diet.",
        conversation_id="bruno", kind="fact", user_id="bruno", created_at=ago(400),
    )
    response = await client.put(
        f"/v1/conversations/{CONVERSATION}/state", params={"tenant_id": tenant},
        json={"state": {"destination": "Lisbon", "days": 5, "step": "restaurants"}},
    )
    assert response.status_code == 201, response.text
    return ids


async def context(client: httpx.AsyncClient, tenant: str, **body: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/context", json={"tenant_id": tenant, "conversation_id": CONVERSATION, **body}
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def check_budget(answer: dict[str, Any], budget: int) -> None:
    """The answer's own counts hold, recounted here, and none exceeds the budget."""
    usage = answer["usage"]
    assert usage["budget_tokens"] == budget
    assert usage["text_tokens"] == tokens.count(answer["text"])
    assert usage["messages_tokens"] == tokens.chat(answer["messages"])
    assert usage["total_tokens"] == max(usage["text_tokens"], usage["messages_tokens"])
    assert usage["total_tokens"] <= budget
    assert usage["turns"] == answer["turns"]["tokens"] == sum(
        turn["tokens"] for turn in answer["turns"]["items"]
    )
    assert usage["memories"] == answer["memories"]["tokens"]
    assert usage["state"] == (answer["state"]["tokens"] if answer["state"] else 0)
    assert usage["summary"] == (answer["summary"]["tokens"] if answer["summary"] else 0)


async def test_a_generous_budget_holds_every_part(client: httpx.AsyncClient, tenant: str) -> None:
    ids = await seed(client, tenant)
    answer = await context(client, tenant)
    check_budget(answer, 2000)
    # Working memory, compact JSON.
    assert json.loads(answer["state"]["content"]) == {
        "destination": "Lisbon", "days": 5, "step": "restaurants"
    }
    assert answer["state"]["version"] == 1
    assert not answer["state"]["truncated"]
    # The newest summary only.
    assert answer["summary"]["message_id"] == ids["summary"]
    # Defaults: the user of the last turns, the newest user turn as the query.
    assert answer["user_id"] == USER
    assert answer["query"] == TURNS[-1][1]
    # Facts and preferences first, then other memories; never another user's, never a turn of
    # the window, never this conversation's summaries.
    memory_ids = [item["message_id"] for item in answer["memories"]["items"]]
    kinds = [item["kind"] for item in answer["memories"]["items"]]
    assert set(memory_ids[:2]) == {ids["fact"], ids["preference"]}
    assert ids["old_message"] in memory_ids[2:]
    assert set(kinds[2:]) <= {"message", "procedure", "event", "summary"}
    assert not {ids["other_user"], ids["summary"], ids["old_summary"]} & set(memory_ids)
    assert not {ids[f"turn{i}"] for i in range(5)} & set(memory_ids)
    # The turns verbatim, oldest first.
    assert [(t["role"], t["content"]) for t in answer["turns"]["items"]] == TURNS
    assert answer["turns"]["omitted"] == answer["memories"]["omitted"] == 0
    # The same as chat messages: the system message, then the turns.
    messages = answer["messages"]
    assert messages[0]["role"] == "system"
    assert messages[1:] == [{"role": role, "content": content} for role, content in TURNS]
    system = messages[0]["content"]
    for heading in ("## Working memory", "## Conversation summary", "## Relevant memories"):
        assert heading in system
    assert "allergic to peanuts" in system
    assert "Bruno" not in system
    # And as one text: the system message's content, then the turns.
    assert answer["text"].startswith(system)
    assert answer["text"].endswith("\n".join(f"{role}: {content}" for role, content in TURNS))


async def test_a_short_budget_keeps_the_newest_turns(client: httpx.AsyncClient, tenant: str) -> None:
    await seed(client, tenant)
    answer = await context(client, tenant, budget_tokens=100)
    check_budget(answer, 100)
    kept = [(t["role"], t["content"]) for t in answer["turns"]["items"]]
    assert kept
    assert kept == TURNS[len(TURNS) - len(kept):]
    assert answer["turns"]["omitted"] == len(TURNS) - len(kept) > 0


async def test_the_budget_is_never_exceeded(client: httpx.AsyncClient, tenant: str) -> None:
    """Many budgets, from the smallest allowed up: every answer within its budget, and each
    larger budget keeps at least as many turns (turns are last to be cut)."""
    await seed(client, tenant)
    previous: dict[str, Any] | None = None
    for budget in [32, 33, 40, 47, 55, 64, 80, 97, 128, 150, 190, 256, 300, 377, 512, 700, 1000,
                   2000, 4000]:
        answer = await context(client, tenant, budget_tokens=budget)
        check_budget(answer, budget)
        if previous is not None:
            assert answer["usage"]["total_tokens"] >= previous["usage"]["total_tokens"] - 40
        previous = answer
    # The largest budget holds everything; the smallest still the newest turn (perhaps cut).
    assert previous is not None
    assert previous["turns"]["omitted"] == 0
    smallest = await context(client, tenant, budget_tokens=32)
    assert [t["role"] for t in smallest["turns"]["items"]] == ["user"]
    assert TURNS[-1][1].startswith(smallest["turns"]["items"][0]["content"].rstrip("…"))


async def test_an_explicit_query_and_user(client: httpx.AsyncClient, tenant: str) -> None:
    ids = await seed(client, tenant)
    answer = await context(client, tenant, query="steak restaurants diet", user_id="bruno")
    assert answer["query"] == "steak restaurants diet"
    assert answer["user_id"] == "bruno"
    assert [item["message_id"] for item in answer["memories"]["items"]] == [ids["other_user"]]


async def test_without_a_user_memories_come_from_the_conversation(
    client: httpx.AsyncClient, tenant: str
) -> None:
    early = await remember(client, tenant, "My passport number ends in 42.",
                           conversation_id="anon", created_at=ago(30))
    for minute in range(3):
        await remember(client, tenant, f"small talk number {minute}", conversation_id="anon",
                       role="assistant", created_at=ago(20 - minute))
    await remember(client, tenant, "Elsewhere: my passport is blue.", conversation_id="other")
    answer = await context(client, tenant, conversation_id="anon", max_turns=3,
                           query="what is my passport number")
    assert answer["user_id"] is None
    assert [item["message_id"] for item in answer["memories"]["items"]] == [early]
    assert len(answer["turns"]["items"]) == 3


async def test_an_unknown_conversation_is_an_empty_context(
    client: httpx.AsyncClient, tenant: str
) -> None:
    answer = await context(client, tenant, conversation_id="never-written")
    assert answer["state"] is None
    assert answer["summary"] is None
    assert answer["turns"]["items"] == []
    assert answer["memories"]["items"] == []
    assert answer["messages"] == []
    assert answer["text"] == ""
    assert answer["usage"]["total_tokens"] == 0
    assert answer["search_mode"] is None


async def test_expired_and_archived_messages_never_appear(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine
) -> None:
    await seed(client, tenant)
    past = datetime.now(UTC) - timedelta(minutes=1)
    expired_fact = message_row(tenant, "profile", past - timedelta(hours=1), kind="fact",
                               user_id=USER, content="Ana is allergic to restaurants diet (expired)")
    expired_fact["expires_at"] = past
    archived_turn = message_row(tenant, CONVERSATION, past, user_id=USER, archived=True,
                                content="archived restaurants diet turn")
    expired_summary = message_row(tenant, CONVERSATION, past, kind="summary", role="system",
                                  content="expired summary")
    expired_summary["expires_at"] = past
    hidden = await insert_rows(db_engine, [expired_fact, archived_turn, expired_summary])
    answer = await context(client, tenant)
    seen = {item["message_id"] for item in answer["memories"]["items"]}
    seen |= {item["message_id"] for item in answer["turns"]["items"]}
    seen.add(answer["summary"]["message_id"])
    assert not {str(i) for i in hidden} & seen
    assert "expired" not in answer["text"]
    assert "archived" not in answer["text"]


async def test_superseded_facts_and_summaries_never_appear(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine
) -> None:
    ids = await seed(client, tenant)
    past = datetime.now(UTC) - timedelta(minutes=1)
    # A fact a newer one replaced, worded to match the query better than the current ones, and
    # a newer summary that consolidation has since replaced.
    replaced_fact = message_row(tenant, "profile", past, kind="fact", user_id=USER,
                                content="Ana's diet: which restaurants suit my diet (replaced)")
    replaced_fact["superseded_by"] = uuid.UUID(ids["fact"])
    replaced_fact["valid_until"] = past
    replaced_summary = message_row(tenant, CONVERSATION, past, kind="summary", role="system",
                                   content="replaced summary")
    replaced_summary["superseded_by"] = uuid.UUID(ids["summary"])
    hidden = await insert_rows(db_engine, [replaced_fact, replaced_summary])
    answer = await context(client, tenant)
    seen = {item["message_id"] for item in answer["memories"]["items"]}
    assert ids["fact"] in seen
    assert not {str(i) for i in hidden} & seen
    assert answer["summary"]["message_id"] == ids["summary"]
    assert "replaced" not in answer["text"]


async def test_a_tool_turn_is_sent_as_a_system_message(
    client: httpx.AsyncClient, tenant: str
) -> None:
    await remember(client, tenant, "Call the weather tool", conversation_id="t", created_at=ago(2))
    await remember(client, tenant, '{"temp": 21}', conversation_id="t", role="tool",
                   created_at=ago(1))
    answer = await context(client, tenant, conversation_id="t")
    assert answer["messages"][-1] == {"role": "system", "content": 'Tool output: {"temp": 21}'}
    assert answer["turns"]["items"][-1]["role"] == "tool"
    assert answer["turns"]["items"][-1]["content"] == '{"temp": 21}'
    assert answer["text"].endswith('tool: {"temp": 21}')


@pytest.mark.parametrize(
    "body",
    [
        {"conversation_id": "c", "budget_tokens": 31},
        {"conversation_id": "c", "budget_tokens": 1_000_001},
        {"conversation_id": "c", "max_turns": 0},
        {"conversation_id": "c", "query": "   "},
        {"budget_tokens": 100},
        {"conversation_id": "c", "budget_tokens": "100"},
        {"conversation_id": "c", "surprise": 1},
    ],
)
async def test_bad_requests_are_422(
    client: httpx.AsyncClient, tenant: str, body: dict[str, Any]
) -> None:
    response = await client.post("/v1/context", json={"tenant_id": tenant, **body})
    assert response.status_code == 422, response.text


async def test_tenant_walls(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    """Two tenant-bound keys: each sees only its own conversation, memories and state under the
    same names, and naming the other's tenant is 403."""
    mine, theirs = new_tenant(), new_tenant()
    keys = {tenant: await tenant_key(db_engine, tenant) for tenant in (mine, theirs)}
    answers = {}
    for tenant in (mine, theirs):
        async with running_client(settings_factory(), {"X-API-Key": keys[tenant]}) as http:
            await seed(http, tenant)
            await remember(http, tenant, f"secret of {tenant}: restaurants diet",
                           conversation_id="profile", kind="fact", user_id=USER)
    for tenant, other in ((mine, theirs), (theirs, mine)):
        async with running_client(settings_factory(), {"X-API-Key": keys[tenant]}) as http:
            response = await http.post("/v1/context", json={"conversation_id": CONVERSATION})
            assert response.status_code == 200, response.text
            answers[tenant] = response.json()
            assert f"secret of {tenant}" in answers[tenant]["text"]
            assert other not in answers[tenant]["text"]
            forbidden = await http.post(
                "/v1/context", json={"tenant_id": other, "conversation_id": CONVERSATION}
            )
            assert forbidden.status_code == 403, forbidden.text
    ids = [
        {item["message_id"] for part in ("memories", "turns") for item in answers[t][part]["items"]}
        for t in (mine, theirs)
    ]
    assert ids[0]
    assert ids[1]
    assert not ids[0] & ids[1]


async def test_the_read_scope_is_needed(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine, tenant: str
) -> None:
    from memory_layer.auth.service import create_api_key
    from memory_layer.kit.db.engine import create_sessionmaker
    from memory_layer.models.api_key import KeyScope

    async with create_sessionmaker(db_engine).begin() as session:
        _, write_only = await create_api_key(session, tenant, "writer", scopes=[KeyScope.write])
    async with running_client(settings_factory(), {"X-API-Key": write_only}) as http:
        response = await http.post("/v1/context", json={"conversation_id": CONVERSATION})
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"


async def test_a_failing_provider_degrades_to_keyword_memories(
    client: AppClient, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await seed(client, tenant)

    async def broken_query(text: str) -> list[float]:
        raise EmbeddingError("model unavailable", kind="unavailable")

    monkeypatch.setattr(client.embedder, "embed_query", broken_query)
    answer = await context(client, tenant)
    assert answer["search_mode"] == "keyword"
    assert answer["degraded"] == "embedding_failed: model unavailable"
    # "restaurants" and "diet" are words of the fact and the preference.
    assert {ids["fact"], ids["preference"]} <= {m["message_id"] for m in answer["memories"]["items"]}
    assert len(answer["turns"]["items"]) == len(TURNS)


async def test_long_turns_are_counted_off_the_event_loop_and_the_newest_is_cut(
    client: AppClient, tenant: str
) -> None:
    long = "a long paragraph about the itinerary, day by day. " * 600  # 30,600 characters
    for minutes in (3, 2):
        await remember(client, tenant, long, conversation_id="long", created_at=ago(minutes))
    answer = await context(client, tenant, conversation_id="long", budget_tokens=2000)
    check_budget(answer, 2000)
    assert len(answer["turns"]["items"]) == 1
    newest = answer["turns"]["items"][0]
    assert newest["truncated"]
    assert newest["content"].endswith("…")
    assert long.startswith(newest["content"].removesuffix("…"))
    assert answer["turns"]["omitted"] == 1
