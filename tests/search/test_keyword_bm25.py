"""BM25 keyword scoring in PostgreSQL: a rare word outweighs a common one, counts stay within the
search's filters, and every score lies in [0, 1]."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from memory_layer.config import KeywordScoring, Settings
from memory_layer.search import repository as search_repository
from tests.fixtures.app import ADMIN_KEY, running_client
from tests.fixtures.messages import remember
from tests.fixtures.tenants import new_tenant

COMMON = [
    "We had dinner at home tonight",
    "Dinner with my parents on Sunday",
    "I cooked dinner for the neighbours",
    "Dinner plans fell through again",
    "Pasta for dinner, as usual",
    "We skipped dinner and went to bed",
]
REPEATED = "Dinner was late, dinner was cold, dinner was burnt: what a dinner"
# The final score is the keyword score alone, so the order is the keyword side's.
KEYWORD_ONLY: dict[str, Any] = {"score_weight_importance": 0.0, "score_weight_recency": 0.0}
RARE = "I practised the saxophone for an hour after work"


async def keyword_search(
    client: httpx.AsyncClient, tenant: str, query: str, **fields: Any
) -> list[dict[str, Any]]:
    response = await client.post(
        "/v1/memory/search",
        json={"tenant_id": tenant, "query": query, "mode": "keyword", "top_k": 10, **fields},
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_a_rare_word_outweighs_a_common_one(settings_factory: Callable[..., Settings]) -> None:
    tenant = new_tenant()
    query = "did I play the saxophone after dinner"
    cover_density = settings_factory(
        search_keyword_scoring=KeywordScoring.cover_density, **KEYWORD_ONLY
    )
    async with running_client(cover_density, headers={"X-API-Key": ADMIN_KEY}) as client:
        for content in [*COMMON, REPEATED, RARE]:
            await remember(client, tenant, content)
        # Without inverse document frequency, four "dinner"s beat one "saxophone".
        assert (await keyword_search(client, tenant, query))[0]["content"] == REPEATED
    async with running_client(settings_factory(**KEYWORD_ONLY), headers={"X-API-Key": ADMIN_KEY}) as client:
        items = await keyword_search(client, tenant, query)
        assert items[0]["content"] == RARE  # BM25 is the default
        assert {item["content"] for item in items} == {*COMMON, REPEATED, RARE}
        scores = [item["explanation"]["keyword_score"] for item in items]
        assert all(0.0 < score <= 1.0 for score in scores)
        assert scores == sorted(scores, reverse=True)
        # The term frequency saturates but still counts: four "dinner"s beat one.
        assert items[1]["content"] == REPEATED
        # Only stop words: nothing to match, no error.
        assert await keyword_search(client, tenant, "what did I do") == []
        # Websearch syntax keeps its strict meaning.
        strict = await keyword_search(client, tenant, '"cold" -saxophone')
        assert [item["content"] for item in strict] == [REPEATED]


async def test_document_frequencies_are_counted_within_the_filters(
    settings_factory: Callable[..., Settings],
) -> None:
    tenant = new_tenant()
    async with running_client(settings_factory(**KEYWORD_ONLY), headers={"X-API-Key": ADMIN_KEY}) as client:
        # In conversation "a", "garden" is in every message and "lease" in one; elsewhere the other
        # way round. Searching "a" ranks by "a"'s own counts.
        await remember(client, tenant, "The garden needs watering", conversation_id="a")
        await remember(client, tenant, "The garden shed is open", conversation_id="a")
        await remember(client, tenant, "The garden gate is new, so is the lease", conversation_id="a")
        await remember(client, tenant, "The garden chairs are out", conversation_id="a")
        for number in range(6):
            await remember(client, tenant, f"lease number {number} signed", conversation_id="b")
        await remember(client, tenant, "A garden at last", conversation_id="b")
        query = "garden lease"
        in_a = await keyword_search(client, tenant, query, conversation_id="a")
        assert in_a[0]["content"] == "The garden gate is new, so is the lease"
        in_b = await keyword_search(client, tenant, query, conversation_id="b")
        assert in_b[0]["content"] == "A garden at last"


async def test_keyword_cost_is_bounded_by_the_sample_and_the_match_cap(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the statistics sample, a word most messages hold brings no candidates of its own, and
    no query scores more than the match cap's rows, however many messages match."""
    monkeypatch.setattr(search_repository, "BM25_STAT_SAMPLE", 8)
    monkeypatch.setattr(search_repository, "BM25_MATCH_CAP", 3)
    tenant = new_tenant()
    async with running_client(settings_factory(**KEYWORD_ONLY), headers={"X-API-Key": ADMIN_KEY}) as client:
        for content in COMMON * 2:
            await remember(client, tenant, content)
        await remember(client, tenant, "Dinner at eight", conversation_id="c2")
        await remember(client, tenant, "Saxophone practice before dinner", conversation_id="c2")
        await remember(client, tenant, "Dinner, then the saxophone again", conversation_id="c2")
        # "dinner" is in every sampled message: only "saxophone" brings candidates.
        items = await keyword_search(client, tenant, "saxophone dinner")
        assert sorted(item["content"] for item in items) == [
            "Dinner, then the saxophone again", "Saxophone practice before dinner"]
        # Only common words: the messages holding all of them, at most the cap's worth.
        assert len(await keyword_search(client, tenant, "dinner")) == 3
        # A scope the sample holds whole is searched as before: every word brings candidates.
        items = await keyword_search(client, tenant, "saxophone dinner", conversation_id="c2")
        assert len(items) == 3
    monkeypatch.setattr(search_repository, "BM25_STAT_SAMPLE", 1_000)
    monkeypatch.setattr(search_repository, "BM25_MATCH_CAP", 1_000)
    async with running_client(settings_factory(**KEYWORD_ONLY), headers={"X-API-Key": ADMIN_KEY}) as client:
        items = await keyword_search(client, tenant, "saxophone dinner")
        assert len(items) == 10  # top_k of the 15 messages holding one word or the other
