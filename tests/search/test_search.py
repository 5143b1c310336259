"""GET and POST /v1/memory/search: ranking, explanations, filters, bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from memory_layer.embeddings.providers.cache import QueryCachingProvider
from tests.fixtures.app import AppClient
from tests.fixtures.messages import remember


async def test_get_and_post_return_the_nearest_message_first(
    client: httpx.AsyncClient, tenant: str
) -> None:
    target = await remember(client, tenant, "I love Python programming")
    await remember(client, tenant, "The weather in Lisbon was sunny")
    await remember(client, tenant, "We booked a table for dinner")
    params: dict[str, str | int] = {"tenant_id": tenant, "query": "python programming language", "top_k": 5}
    by_get = await client.get("/v1/memory/search", params=params)
    by_post = await client.post("/v1/memory/search", json=params)
    assert by_get.status_code == by_post.status_code == 200
    assert by_get.json()["items"][0]["message_id"] == target
    def ranked(response: httpx.Response) -> list[tuple[str, float]]:
        return [(i["message_id"], round(i["similarity"], 9)) for i in response.json()["items"]]

    assert ranked(by_get) == ranked(by_post)
    assert by_get.json()["total"] == 3
    assert by_get.json()["embedding_model"] == "fake-hash-384"


async def test_items_explain_their_score(client: httpx.AsyncClient, tenant: str) -> None:
    await remember(client, tenant, "I love Python programming")
    await remember(client, tenant, "thanks!")
    response = await client.get(
        "/v1/memory/search", params={"tenant_id": tenant, "query": "python", "top_k": 5}
    )
    items = response.json()["items"]
    assert len(items) == 2
    for item in items:
        for field in ("message_id", "conversation_id", "role", "content", "metadata",
                      "created_at", "score", "similarity", "importance", "recency"):
            assert field in item
        parts = item["score_parts"]
        assert parts["relevance"] + parts["importance"] + parts["recency"] == pytest.approx(
            item["score"], abs=1e-6
        )
        # default weights 0.7 / 0.2 / 0.1 over raw signals
        explanation = item["explanation"]
        assert parts["relevance"] == pytest.approx(0.7 * explanation["relevance"], abs=1e-6)
        assert parts["importance"] == pytest.approx(0.2 * item["importance"], abs=1e-6)
        assert parts["recency"] == pytest.approx(0.1 * item["recency"], abs=1e-6)
        assert 0.0 <= item["score"] <= 1.0
        assert 0.99 < item["recency"] <= 1.0
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True)


async def test_top_k_limits_the_answer(client: httpx.AsyncClient, tenant: str) -> None:
    for i in range(6):
        await remember(client, tenant, f"note number {i} about gardening")
    response = await client.get(
        "/v1/memory/search", params={"tenant_id": tenant, "query": "gardening", "top_k": 4}
    )
    assert response.json()["total"] == 4


@pytest.mark.parametrize("top_k", [0, 101, -1, "many"])
async def test_bad_top_k_is_a_422(client: httpx.AsyncClient, tenant: str, top_k: int | str) -> None:
    response = await client.get(
        "/v1/memory/search", params={"tenant_id": tenant, "query": "x", "top_k": top_k}
    )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    post = await client.post(
        "/v1/memory/search", json={"tenant_id": tenant, "query": "x", "top_k": top_k}
    )
    assert post.status_code == 422


@pytest.mark.parametrize(
    "params",
    [{"query": ""}, {"query": "  "}, {"query": "a\u0000b"}, {"importance_min": 2},
     {"role": "robot"}, {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}],
)
async def test_bad_search_parameters_are_422(
    client: httpx.AsyncClient, tenant: str, params: dict[str, Any]
) -> None:
    body = {"tenant_id": tenant, "query": "x"} | params
    response = await client.post("/v1/memory/search", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_filters_narrow_the_results(client: httpx.AsyncClient, tenant: str) -> None:
    old = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    in_c1 = await remember(client, tenant, "python tips for beginners")
    in_c2 = await remember(client, tenant, "python tips for experts", conversation_id="c2")
    by_bot = await remember(client, tenant, "python tips from the bot", role="assistant")
    important = await remember(client, tenant, "python tips, vital", importance_override=0.95)
    older = await remember(client, tenant, "python tips from last month", created_at=old)

    async def ids(**filters: Any) -> set[str]:
        body = {"tenant_id": tenant, "query": "python tips", "top_k": 20} | filters
        response = await client.post("/v1/memory/search", json=body)
        assert response.status_code == 200, response.text
        return {item["message_id"] for item in response.json()["items"]}

    assert await ids() == {in_c1, in_c2, by_bot, important, older}
    assert await ids(conversation_id="c2") == {in_c2}
    assert await ids(role="assistant") == {by_bot}
    assert await ids(importance_min=0.9) == {important}
    week_ago = (datetime.now(UTC) - timedelta(days=7)).isoformat()
    assert await ids(until=week_ago) == {older}
    assert older not in await ids(since=week_ago)
    assert await ids(conversation_id="nope") == set()


async def test_recent_beats_old_when_similarity_ties(client: httpx.AsyncClient, tenant: str) -> None:
    old = (datetime.now(UTC) - timedelta(days=60)).isoformat()
    stale = await remember(client, tenant, "my favourite colour is green", created_at=old,
                           importance_override=0.5)
    fresh = await remember(client, tenant, "my favourite colour is green",
                           importance_override=0.5, conversation_id="c9")
    items = (
        await client.get("/v1/memory/search", params={"tenant_id": tenant, "query": "colour"})
    ).json()["items"]
    assert [item["message_id"] for item in items] == [fresh, stale]
    assert items[0]["recency"] > items[1]["recency"]


async def test_search_never_returns_another_tenants_messages(
    client: httpx.AsyncClient, tenant: str
) -> None:
    other = f"{tenant}-neighbour"
    await remember(client, other, "I love Python programming")
    mine = await remember(client, tenant, "completely different topic")
    items = (
        await client.get(
            "/v1/memory/search", params={"tenant_id": tenant, "query": "python", "top_k": 100}
        )
    ).json()["items"]
    assert [item["message_id"] for item in items] == [mine]


async def test_repeated_query_is_embedded_once(client: AppClient, tenant: str) -> None:
    await remember(client, tenant, "I love Python programming")
    embedder = client.embedder
    assert isinstance(embedder, QueryCachingProvider)
    misses_before = embedder.misses
    params = {"tenant_id": tenant, "query": f"python {tenant}"}
    first = await client.get("/v1/memory/search", params=params)
    second = await client.post("/v1/memory/search", json=params)
    assert embedder.misses == misses_before + 1
    assert first.json()["items"][0]["similarity"] == second.json()["items"][0]["similarity"]
