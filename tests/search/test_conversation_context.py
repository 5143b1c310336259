"""Conversation context in search: the turns around a strong hit, the sessions that hold several."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from memory_layer.config import Settings
from memory_layer.search.context import add_neighbours, boost_sessions
from memory_layer.search.plan import ScoredRow
from tests.fixtures.app import ADMIN_KEY, running_client
from tests.fixtures.messages import remember
from tests.fixtures.tenants import new_tenant


async def _search(client: httpx.AsyncClient, tenant: str, query: str, **fields: Any) -> list[str]:
    response = await client.post(
        "/v1/memory/search",
        json={"tenant_id": tenant, "query": query, "mode": "keyword", "top_k": 3, **fields},
    )
    assert response.status_code == 200, response.text
    return [item["content"] for item in response.json()["items"]]


def _row(score: float, at: datetime, conversation: str = "c1") -> ScoredRow:
    return ScoredRow(
        id=uuid.uuid4(), conversation_id=conversation, user_id=None, role="user", kind="message",
        content="x", metadata={}, importance=0.5, created_at=at, embedding_status="ready",
        vector_rank=1, similarity=score, keyword_rank=None, keyword_score=None, fused=0.0,
        relevance=score, recency=0.0, part_relevance=0.7 * score, part_importance=0.0,
        part_recency=0.0, score=0.7 * score,
    )


def test_a_session_with_two_strong_hits_lifts_its_rows() -> None:
    day = datetime(2025, 5, 1, 19, tzinfo=UTC)
    strong_a, strong_b = _row(0.7, day), _row(0.6, day + timedelta(minutes=4))
    elsewhere = [_row(0.65 - d / 100, day + timedelta(days=d)) for d in (3, 5, 7)]
    same_session = _row(0.5, day + timedelta(minutes=2))
    other_conversation = _row(0.55, day + timedelta(minutes=2), conversation="c2")
    rows = [strong_a, strong_b, *elsewhere, other_conversation, same_session]
    ranked = boost_sessions(rows, boost=0.2, gap=timedelta(hours=3), w_relevance=0.7)
    ids = [row.id for row in ranked]
    assert ids[:3] == [strong_a.id, strong_b.id, same_session.id]
    lifted = ranked[2]
    assert abs(lifted.relevance - 0.7) < 1e-12
    assert abs(lifted.session_boost - 0.2) < 1e-12
    assert abs(lifted.score - (lifted.part_relevance + lifted.part_importance + lifted.part_recency)) < 1e-12
    assert ids.index(other_conversation.id) > ids.index(elsewhere[0].id)
    # A session's bonus never carries a row past the best hit, which sits alone in its session.
    alone = _row(0.7, day - timedelta(days=9))
    pair = [_row(0.69, day), _row(0.68, day + timedelta(minutes=1))]
    ranked = boost_sessions([alone, *pair], boost=0.2, gap=timedelta(hours=3), w_relevance=0.7)
    assert ranked[0] == alone
    assert {row.id for row in ranked[1:]} == {row.id for row in pair}
    assert all(abs(row.score - alone.score) < 1e-12 and row.session_boost > 0 for row in ranked[1:])
    # Strong hits in different sessions: nothing moves.
    apart = [strong_a, *elsewhere, same_session]
    assert boost_sessions(apart, boost=0.2, gap=timedelta(minutes=1), w_relevance=0.7) == apart


def test_a_neighbour_takes_a_decayed_score_and_a_hit_keeps_its_better_one() -> None:
    day = datetime(2025, 5, 1, 19, tzinfo=UTC)
    hit, low, lower = _row(0.9, day), _row(0.5, day + timedelta(minutes=1)), _row(0.2, day)
    after = {"id": uuid.uuid4(), "content": "after", "created_at": day + timedelta(minutes=1)}
    rows = add_neighbours(
        [hit, low, lower], {hit.id: [after, {"id": lower.id}], low.id: [{"id": hit.id}]}, decay=0.8
    )
    assert [row.id for row in rows] == [hit.id, after["id"], lower.id, low.id]
    assert rows[1].score == hit.score * 0.8
    assert rows[1].similarity is None
    assert rows[2].similarity == 0.2  # raised, its own signals kept
    assert rows[0] == hit  # the strong hit is not lowered by its weaker neighbour


async def test_the_turns_around_a_strong_hit_join_it(
    settings_factory: Callable[..., Settings],
) -> None:
    tenant, other = new_tenant(), new_tenant()
    turns = [
        ("jonas", "2025-05-01T10:00:00Z", "Guess where I spent the long weekend."),
        ("maya", "2025-05-01T10:01:00Z", "Porto, with the whole family, for the wine harvest."),
        ("jonas", "2025-05-01T10:02:00Z", "The trains there were late every single day."),
        ("maya", "2025-05-01T10:03:00Z", "Trains in Porto are always late, the harvest trains too."),
        ("jonas", "2025-05-08T10:00:00Z", "Next time take the harvest bus, trains are slow there."),
    ]
    async with running_client(settings_factory(), headers={"X-API-Key": ADMIN_KEY}) as client:
        for user, created_at, content in turns:
            await remember(client, tenant, content, user_id=user, created_at=created_at)
        # Another tenant's turn in a conversation of the same id, in between: never a neighbour.
        await remember(client, other, "Not from this tenant.", created_at="2025-05-01T10:00:30Z")
        # Off by default: the question before the answer ("Guess where ...") shares no word.
        found = await _search(client, tenant, "Porto wine harvest family")
        assert turns[0][2] not in found
    on = settings_factory(search_neighbours=1, search_answer_expansion=False)
    async with running_client(on, headers={"X-API-Key": ADMIN_KEY}) as client:
        found = await _search(client, tenant, "Porto wine harvest family")
        assert found[0] == turns[1][2]
        assert set(found[1:]) == {turns[0][2], turns[2][2]}
        # Neighbours obey the search's filters.
        found = await _search(client, tenant, "Porto wine harvest family", user_id="maya")
        assert turns[0][2] not in found
        assert turns[2][2] not in found
        assert found[0] == turns[1][2]


async def test_a_session_with_several_hits_lifts_its_other_turns(
    settings_factory: Callable[..., Settings],
) -> None:
    tenant = new_tenant()
    session = [
        ("2025-05-01T19:00:00Z", "The climbing gym opened a new bouldering wall."),
        ("2025-05-01T19:02:00Z", "I finally topped the hardest bouldering problem at the gym."),
        ("2025-05-01T19:04:00Z", "My forearms are sore after the gym."),
    ]
    elsewhere = [
        ("2025-06-01T19:00:00Z", "I hurt my knee at the gym on the rowing machine."),
        ("2025-07-01T19:00:00Z", "The gym raised its prices again."),
        ("2025-08-01T19:00:00Z", "A new gym opened near the station."),
    ]
    query = "bouldering at the climbing gym"
    plain_settings = settings_factory(search_session_boost=0.0)
    async with running_client(plain_settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        for created_at, content in session + elsewhere:
            await remember(client, tenant, content, created_at=created_at)
        plain = await _search(client, tenant, query, top_k=6)
    # A turn of the session that matches one word, like the turns of other days.
    assert plain.index(session[2][1]) > 2
    boosted = settings_factory(search_session_boost=0.3)
    async with running_client(boosted, headers={"X-API-Key": ADMIN_KEY}) as client:
        found = await _search(client, tenant, query, top_k=6)
        assert found[:3] == plain[:2] + [session[2][1]]
        assert set(found) == set(plain)  # it ranks, never filters
