"""Search modes, every filter, min_score, diversity and the explanation of each hit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.messages import remember as remember_in


async def remember(client: httpx.AsyncClient, tenant: str, content: str, **fields: Any) -> str:
    fields.setdefault("conversation_id", "c-1")
    return await remember_in(client, tenant, content, **fields)


async def search(client: httpx.AsyncClient, tenant: str, query: str, **fields: Any) -> Any:
    response = await client.post(
        "/v1/memory/search", json={"tenant_id": tenant, "query": query, "top_k": 20, **fields}
    )
    assert response.status_code == 200, response.text
    return response.json()


def ids(body: Any) -> list[str]:
    return [item["message_id"] for item in body["items"]]


async def test_each_filter_narrows_the_answer(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine
) -> None:
    now = datetime.now(UTC)
    a = await remember(client, tenant, "coffee order for the team", user_id="ana",
                       metadata={"channel": "slack", "tags": ["work"]},
                       created_at=(now - timedelta(days=10)).isoformat())
    b = await remember(client, tenant, "coffee beans from Kenya", user_id="ben", role="assistant",
                       conversation_id="c-2", metadata={"channel": "web"},
                       importance_override=0.9)
    c = await remember(client, tenant, "coffee machine is broken", user_id="ana",
                       metadata={"channel": "slack", "tags": ["office", "work"]},
                       created_at=(now - timedelta(days=2)).isoformat())
    assert set(ids(await search(client, tenant, "coffee"))) == {a, b, c}

    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"user_id": "ana"}, {a, c}),
        ({"role": "assistant"}, {b}),
        ({"conversation_id": "c-2"}, {b}),
        ({"importance_min": 0.8}, {b}),
        ({"since": (now - timedelta(days=5)).isoformat()}, {b, c}),
        ({"until": (now - timedelta(days=5)).isoformat()}, {a}),
        ({"metadata": {"channel": "slack"}}, {a, c}),
        ({"metadata": {"tags": ["office"]}}, {c}),
        ({"metadata": {"channel": "slack"}, "user_id": "ana", "since":
          (now - timedelta(days=5)).isoformat()}, {c}),
    ]
    for mode in ("hybrid", "vector", "keyword"):
        for filters, expected in cases:
            found = set(ids(await search(client, tenant, "coffee", mode=mode, **filters)))
            assert found == expected, (mode, filters)

    async with db_engine.begin() as connection:
        await connection.execute(
            text("UPDATE messages SET archived_at = now() WHERE tenant_id = :t AND id = :id"),
            {"t": tenant, "id": a},
        )
    assert set(ids(await search(client, tenant, "coffee"))) == {b, c}
    assert set(ids(await search(client, tenant, "coffee", include_archived=True))) == {a, b, c}


async def test_metadata_filter_in_a_get_query_string(client: httpx.AsyncClient, tenant: str) -> None:
    wanted = await remember(client, tenant, "deploy on friday", metadata={"env": "prod"})
    await remember(client, tenant, "deploy on monday", metadata={"env": "staging"})
    response = await client.get(
        "/v1/memory/search",
        params={"tenant_id": tenant, "query": "deploy", "metadata": '{"env": "prod"}'},
    )
    assert response.status_code == 200, response.text
    assert ids(response.json()) == [wanted]
    bad = await client.get(
        "/v1/memory/search", params={"tenant_id": tenant, "query": "deploy", "metadata": "[1]"}
    )
    assert bad.status_code == 422


async def test_min_score_drops_weak_hits(client: httpx.AsyncClient, tenant: str) -> None:
    for content in ("hiking boots size 44", "boots for hiking in winter", "tax return deadline"):
        await remember(client, tenant, content)
    everything = await search(client, tenant, "hiking boots", mode="vector")
    scores = [item["score"] for item in everything["items"]]
    assert len(scores) == 3
    threshold = (scores[0] + scores[-1]) / 2
    kept = await search(client, tenant, "hiking boots", mode="vector", min_score=threshold)
    assert 0 < len(kept["items"]) < 3
    assert all(item["score"] >= threshold for item in kept["items"])


async def test_modes_explain_their_relevance(client: httpx.AsyncClient, tenant: str) -> None:
    await remember(client, tenant, "the wifi password is hunter2")
    await remember(client, tenant, "the router sits in the hallway")
    await remember(client, tenant, "dinner at eight")
    for mode in ("hybrid", "vector", "keyword"):
        body = await search(client, tenant, "wifi password", mode=mode)
        assert body["mode"] == mode
        assert body["degraded"] is None
        assert body["items"], mode
        for item in body["items"]:
            why = item["explanation"]
            parts = item["score_parts"]
            assert parts["relevance"] + parts["importance"] + parts["recency"] == pytest.approx(
                item["score"], abs=1e-6
            )
            assert why["importance"] == item["importance"]
            if mode == "vector":
                assert why["keyword_rank"] is None
                assert why["relevance"] == pytest.approx(why["similarity"] + why["session_boost"])
                assert why["fused_score"] == pytest.approx(1 / (60 + why["vector_rank"]))
            elif mode == "keyword":
                assert why["vector_rank"] is None
                assert item["similarity"] is None
                assert why["relevance"] == pytest.approx(why["keyword_score"] + why["session_boost"])
                assert 0 < why["keyword_score"] < 1
            else:
                expected = sum(
                    1 / (60 + rank) for rank in (why["vector_rank"], why["keyword_rank"])
                    if rank is not None
                )
                assert why["fused_score"] == pytest.approx(expected)
                # Default fusion: min(1, similarity + 0.5 * keyword score).
                keyword = why["keyword_score"] or 0.0
                assert why["similarity"] is not None
                # Plus the session boost: the three messages are one sitting.
                assert why["relevance"] == pytest.approx(
                    min(1.0, why["similarity"] + 0.5 * keyword + why["session_boost"])
                )
        ranks = [i["explanation"]["keyword_rank"] for i in body["items"]
                 if i["explanation"]["keyword_rank"] is not None]
        assert sorted(ranks) == list(range(1, len(ranks) + 1))
    keyword = await search(client, tenant, "wifi password", mode="keyword")
    assert [item["content"] for item in keyword["items"]] == ["the wifi password is hunter2"]


async def test_diversity_changes_the_order_only_when_asked(
    client: httpx.AsyncClient, tenant: str
) -> None:
    for i in range(3):
        await remember(client, tenant, "my cat Miso loves tuna and naps " + "!" * i)
    other = await remember(client, tenant, "my cat Miso was adopted in 2021")
    plain = await search(client, tenant, "cat Miso tuna", mode="vector", top_k=4)
    zero = await search(client, tenant, "cat Miso tuna", mode="vector", top_k=4, diversity=0.0)
    assert ids(plain) == ids(zero)
    assert all(item["explanation"]["mmr_rank"] is None for item in zero["items"])
    # The near-duplicates rank first by score; with diversity the distinct message moves up.
    assert ids(plain).index(other) == 3
    diverse = await search(client, tenant, "cat Miso tuna", mode="vector", top_k=4, diversity=0.7)
    assert ids(diverse)[0] == ids(plain)[0]
    assert ids(diverse).index(other) == 1
    assert [item["explanation"]["mmr_rank"] for item in diverse["items"]] == [1, 2, 3, 4]
    assert set(ids(diverse)) == set(ids(plain))
