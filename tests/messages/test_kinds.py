"""Memory kinds: stored and read back, filtered in search, and aged at their own half-life."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from memory_layer.config import Settings
from memory_layer.models.message import Kind
from tests.fixtures.app import ADMIN_KEY, running_client
from tests.fixtures.messages import remember


async def test_kind_defaults_to_message_and_is_read_back(
    client: httpx.AsyncClient, tenant: str
) -> None:
    plain = await client.post(
        "/v1/messages", json={"tenant_id": tenant, "conversation_id": "c", "role": "user",
                              "content": "hello there"},
    )
    assert plain.json()["kind"] == "message"
    for kind in Kind:
        written = await client.post(
            "/v1/messages", json={"tenant_id": tenant, "conversation_id": "c", "role": "user",
                                  "content": f"a {kind.value}", "kind": kind.value},
        )
        assert written.status_code == 200, written.text
        assert written.json()["kind"] == kind.value
        read = await client.get(written.json()["status_url"])
        assert read.json()["kind"] == kind.value


async def test_an_unknown_kind_is_a_422(client: httpx.AsyncClient, tenant: str) -> None:
    written = await client.post(
        "/v1/messages", json={"tenant_id": tenant, "conversation_id": "c", "role": "user",
                              "content": "x", "kind": "rumour"},
    )
    searched = await client.get(
        "/v1/memory/search", params={"tenant_id": tenant, "query": "x", "kind": "rumour"}
    )
    for response in (written, searched):
        assert response.status_code == 422
        assert any("kind" in err["loc"] for err in response.json()["detail"])


async def test_search_filters_by_kind_and_names_each_hit_s_kind(
    client: httpx.AsyncClient, tenant: str
) -> None:
    fact = await remember(client, tenant, "The user's dog is called Rex", kind="fact")
    preference = await remember(client, tenant, "The user prefers dogs to cats", kind="preference")
    chat = await remember(client, tenant, "haha my dog Rex just sneezed")

    unfiltered = await client.get(
        "/v1/memory/search", params={"tenant_id": tenant, "query": "dog Rex", "top_k": 10}
    )
    assert {(item["message_id"], item["kind"]) for item in unfiltered.json()["items"]} == {
        (fact, "fact"), (preference, "preference"), (chat, "message"),
    }
    for kind, expected in (("fact", [fact]), ("preference", [preference]), ("message", [chat]),
                           ("summary", [])):
        for mode in ("hybrid", "vector", "keyword"):
            query: dict[str, str | int] = {
                "tenant_id": tenant, "query": "dog Rex", "top_k": 10, "kind": kind, "mode": mode
            }
            by_get = await client.get("/v1/memory/search", params=query)
            by_post = await client.post("/v1/memory/search", json=query)
            for response in (by_get, by_post):
                assert response.status_code == 200, response.text
                items = response.json()["items"]
                assert [item["message_id"] for item in items] == expected, (kind, mode)
                assert all(item["kind"] == kind for item in items)


async def test_a_fact_outranks_equally_similar_equally_old_chit_chat(
    client: httpx.AsyncClient, tenant: str
) -> None:
    # Same text (so the same vector and keyword score), same importance, same age: only the
    # kind differs. With the default settings a fact's half-life is 4320 h, chit-chat's 168 h.
    month_ago = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    same: dict[str, Any] = {"importance_override": 0.5, "created_at": month_ago}
    text = "The user's sister lives in Porto"
    chat = await remember(client, tenant, text, **same)
    fact = await remember(client, tenant, text, kind="fact", **same)

    response = await client.post(
        "/v1/memory/search",
        json={"tenant_id": tenant, "query": "where does the sister live", "mode": "vector"},
    )
    items = response.json()["items"]
    assert [item["message_id"] for item in items] == [fact, chat]
    top, second = items
    assert top["similarity"] == pytest.approx(second["similarity"], abs=1e-9)
    assert top["importance"] == second["importance"] == 0.5
    age_hours = 30 * 24
    assert top["recency"] == pytest.approx(0.5 ** (age_hours / 4320), rel=1e-3)
    assert second["recency"] == pytest.approx(0.5 ** (age_hours / 168), rel=1e-3)
    assert top["score"] - second["score"] == pytest.approx(
        0.1 * (top["recency"] - second["recency"]), abs=1e-9
    )
    assert top["score"] > second["score"]


async def test_kind_half_lives_come_from_the_settings(
    settings_factory: Callable[..., Settings], tenant: str
) -> None:
    # Reversed: chit-chat kept for a year, facts fading in a day. The order flips with it.
    settings = settings_factory(
        recency_half_life_hours=8760, kind_half_life_hours="fact=24"
    )
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        week_ago = (datetime.now(UTC) - timedelta(days=7)).isoformat()
        same: dict[str, Any] = {"importance_override": 0.5, "created_at": week_ago}
        text = "The user's sister lives in Porto"
        fact = await remember(client, tenant, text, kind="fact", **same)
        chat = await remember(client, tenant, text, **same)
        response = await client.post(
            "/v1/memory/search", json={"tenant_id": tenant, "query": "sister", "mode": "vector"}
        )
    items = response.json()["items"]
    assert [item["message_id"] for item in items] == [chat, fact]
    assert items[1]["recency"] == pytest.approx(0.5 ** 7, rel=1e-3)
