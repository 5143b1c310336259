"""Query cues and answer expansion: the period a query names, the speaker it names, the turn that
answers a question hit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from memory_layer.config import Settings
from memory_layer.search.cues import Period, named_day, named_period, query_words
from tests.fixtures.app import ADMIN_KEY, running_client
from tests.fixtures.messages import remember
from tests.fixtures.tenants import new_tenant


def test_the_period_a_query_names() -> None:
    feb = Period(datetime(2025, 2, 1, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC))
    assert named_period("What did Maya start doing in February 2025?") == feb
    assert named_period("anything from feb. 2025") == feb
    assert named_period("what happened in 2025-02") == feb
    dec = named_period("plans for December 2025")
    assert dec == Period(datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    day = Period(datetime(2025, 3, 3, tzinfo=UTC), datetime(2025, 3, 4, tzinfo=UTC))
    assert named_period("the call on 3 March 2025") == day
    assert named_period("the call on March 3rd, 2025") == day
    assert named_period("the call on 2025-03-03") == day
    # No year, two periods, or no month: no period.
    assert named_period("what did we do in May") is None
    assert named_period("May 2025 or June 2025") is None
    assert named_period("the 2025 budget") is None
    assert named_period("on 31 February 2025") is None


def test_the_day_a_query_names_without_its_year() -> None:
    assert named_day("On May 4th, I shared with you some problems. What were they about?") == (5, 4)
    assert named_day("What topic did we talk about on April 27th?") == (4, 27)
    assert named_day("what did I cook on the 2nd of May") == (5, 2)
    assert named_day("the call on 27 April") == (4, 27)
    assert named_day("sept. 3, after work") == (9, 3)
    # With its year it is a period, not a yearless day.
    assert named_day("What did Maya do on 3 February 2025?") is None
    assert named_day("the call on March 3rd, 2025") is None
    # Two days, an impossible day, a time, or "may" the verb: no day.
    assert named_day("On May 4th and on May 5th") is None
    assert named_day("on 30 February") is None
    assert named_day("at 5:30 May came") is None
    assert named_day("I may 2 things") is None
    assert named_day("we march 3 miles") is None
    assert named_day("on may 4th") == (5, 4)


def test_query_words_cut_possessives() -> None:
    assert query_words("What did Jonas's cousin call Jonas's dog?") == [
        "what", "did", "jonas", "cousin", "call", "dog",
    ]


async def _search(client: httpx.AsyncClient, tenant: str, query: str, **fields: Any) -> list[str]:
    response = await client.post(
        "/v1/memory/search",
        json={"tenant_id": tenant, "query": query, "mode": "keyword", "top_k": 5, **fields},
    )
    assert response.status_code == 200, response.text
    return [item["content"] for item in response.json()["items"]]


async def test_a_named_speaker_and_a_named_month_raise_their_messages(
    settings_factory: Callable[..., Settings],
) -> None:
    tenant = new_tenant()
    mine = "My beagle is called Pepper"
    theirs = "I adopted a beagle last week, what a week"
    february = "I started going to pottery"
    june = "I started pottery classes, the studio is lovely, pottery every week"
    plain = settings_factory(search_speaker_boost=0.0, search_time_boost=0.0)
    async with running_client(plain, headers={"X-API-Key": ADMIN_KEY}) as client:
        await remember(client, tenant, mine, user_id="maya")
        await remember(client, tenant, theirs, user_id="jonas")
        await remember(client, tenant, february, user_id="ines", created_at="2025-02-10T10:00:00Z")
        await remember(client, tenant, june, user_id="ines", created_at="2025-06-10T10:00:00Z")
        speaker_query = "Which beagle did Maya adopt last week?"
        month_query = "Which pottery classes did Ines start in February 2025?"
        assert (await _search(client, tenant, speaker_query))[0] == theirs
        assert (await _search(client, tenant, month_query))[0] == june
    # The defaults (0.2, 0.1) would do here too; larger boosts keep the test about the cue.
    settings = settings_factory(search_speaker_boost=0.5, search_time_boost=0.5)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        assert (await _search(client, tenant, speaker_query))[:2] == [mine, theirs]
        assert (await _search(client, tenant, month_query))[:2] == [february, june]
        # The cues rank; they never filter.
        assert set(await _search(client, tenant, "beagle")) == {mine, theirs}


async def test_a_named_day_raises_that_day_of_any_year(
    settings_factory: Callable[..., Settings],
) -> None:
    tenant = new_tenant()
    turns = [
        ("2023-05-02T19:00:00Z", "I went to see a play with my sister, a long comedy"),
        ("2023-05-04T19:00:00Z", "I went to see a play, the actors were wonderful"),
        ("2023-05-06T19:00:00Z", "I went to see a play again, a comedy this time, a play I loved"),
    ]
    query = "On May 4th I went to see a play: what did I say about it?"
    plain = settings_factory(search_time_boost=0.0)
    async with running_client(plain, headers={"X-API-Key": ADMIN_KEY}) as client:
        for created_at, content in turns:
            await remember(client, tenant, content, user_id="maya", created_at=created_at)
        assert (await _search(client, tenant, query))[0] != turns[1][1]
    async with running_client(settings_factory(), headers={"X-API-Key": ADMIN_KEY}) as client:
        found = await _search(client, tenant, query)
        assert found[0] == turns[1][1]
        assert set(found) == {content for _, content in turns}  # it ranks, never filters


async def test_a_question_hit_brings_its_answer(settings_factory: Callable[..., Settings]) -> None:
    tenant, other = new_tenant(), new_tenant()
    turns = [
        ("jonas", "2025-05-01T10:00:00Z", "Did you ever make it to Lisbon in the end?"),
        ("maya", "2025-05-01T10:01:00Z", "Yes, last April! The food alone was worth it."),
        ("jonas", "2025-05-01T10:02:00Z", "Lisbon is on my list, maybe next year when flights are cheap."),
        ("maya", "2025-05-01T10:03:00Z", "You should go."),
    ]
    plain = settings_factory(search_answer_expansion=False)
    async with running_client(plain, headers={"X-API-Key": ADMIN_KEY}) as client:
        for user, created_at, content in turns:
            await remember(client, tenant, content, user_id=user, created_at=created_at)
        # Another tenant's turn in a conversation of the same id, in between: never an answer.
        await remember(client, other, "Not from this tenant.", created_at="2025-05-01T10:00:30Z")
        assert await _search(client, tenant, "Lisbon") == [turns[0][2], turns[2][2]]
    async with running_client(settings_factory(), headers={"X-API-Key": ADMIN_KEY}) as client:
        # On by default.
        assert await _search(client, tenant, "Lisbon") == [turns[0][2], turns[1][2], turns[2][2]]
        assert await _search(client, tenant, "Lisbon", top_k=2) == [turns[0][2], turns[1][2]]
        # The answer obeys the search's filters.
        assert await _search(client, tenant, "Lisbon", user_id="jonas") == [turns[0][2], turns[2][2]]
        response = await client.post(
            "/v1/memory/search",
            json={"tenant_id": tenant, "query": "Lisbon", "mode": "hybrid", "top_k": 5,
                  "diversity": 0.3},
        )
        assert response.status_code == 200, response.text
        contents = [item["content"] for item in response.json()["items"]]
        assert contents[contents.index(turns[0][2]) + 1] == turns[1][2]
