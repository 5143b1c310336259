"""Vectors of their own: a write's `embedding` is stored as given and never recomputed; a search
may pass a `vector` instead of a query."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from memory_layer.embeddings.repository import EmbeddingJobRepository
from memory_layer.kit.db.engine import create_sessionmaker
from tests.fixtures.app import ADMIN_KEY, AppClient, running_client
from tests.fixtures.messages import message_body, remember

DIMENSIONS = 384
CLIENT_MODEL = "client-model-v1"


def unit(index: int, second: int | None = None) -> list[float]:
    """A vector along one axis (or between two): cosine similarities are known exactly."""
    vector = [0.0] * DIMENSIONS
    vector[index] = 1.0
    if second is not None:
        vector[second] = 1.0
    return vector


async def write(
    client: httpx.AsyncClient, tenant: str, content: str, vector: list[float] | None, **extra: Any
) -> httpx.Response:
    body = message_body(tenant, content, **extra)
    if vector is not None:
        body |= {"embedding": vector, "embedding_model": CLIENT_MODEL}
    return await client.post("/v1/messages", json=body)


async def stored(engine: AsyncEngine, message_id: str) -> dict[str, Any]:
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                text(
                    "SELECT embedding::text AS embedding, embedding_model, embedding_status, "
                    "embedding_supplied FROM messages WHERE id = :id"
                ),
                {"id": message_id},
            )
        ).one()._mapping
    return dict(row)


def as_list(vector_text: str) -> list[float]:
    return [float(value) for value in vector_text.strip("[]").split(",")]


async def test_a_write_keeps_its_own_vector_and_reembed_leaves_it(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    given = unit(3, 7)
    created = await write(client, tenant, "the deploy key rotates monthly", given)
    assert created.status_code == 200, created.text
    assert created.json()["embedding_status"] == "ready"
    message_id = created.json()["message_id"]
    row = await stored(db_engine, message_id)
    assert as_list(row["embedding"]) == given  # as given, not the fake model's vector
    assert row["embedding_model"] == CLIENT_MODEL
    assert row["embedding_supplied"] is True

    # A row of an old model is stale for `reembed`; the client's vector is not.
    old = await remember(client, tenant, "an old model's row")
    async with db_engine.begin() as connection:
        await connection.execute(
            text("UPDATE messages SET embedding_model = 'old-model' WHERE id = :id"), {"id": old}
        )
    model = client.embedder.model_name
    async with create_sessionmaker(db_engine).begin() as session:
        marked = await EmbeddingJobRepository(session).mark_for_reembed(model, tenant, 100, False)
    assert marked == 1
    assert (await stored(db_engine, old))["embedding_status"] == "pending"
    assert await stored(db_engine, message_id) == row

    # New content without a new vector: the service embeds it, and the row is its own again.
    edited = await client.patch(
        f"/v1/messages/{message_id}", params={"tenant_id": tenant}, json={"content": "new text"}
    )
    assert edited.status_code == 200, edited.text
    after = await stored(db_engine, message_id)
    assert after["embedding_model"] == model
    assert after["embedding_supplied"] is False


async def test_the_dimension_is_checked_with_a_machine_readable_answer(
    client: AppClient, tenant: str
) -> None:
    short = await write(client, tenant, "three numbers", [0.1, 0.2, 0.3])
    assert short.status_code == 422
    body = short.json()
    assert body["error"] == "embedding_dimension_mismatch"
    assert body["detail"]["expected"] == DIMENSIONS
    assert body["detail"]["received"] == 3
    zeros = await write(client, tenant, "no direction", [0.0] * DIMENSIONS)
    assert zeros.json()["error"] == "invalid_embedding"
    alone = await client.post(
        "/v1/messages", json=message_body(tenant, "no model") | {"embedding": unit(1)}
    )
    assert alone.status_code == 422
    assert "embedding and embedding_model together" in alone.text

    batch = await client.post(
        "/v1/messages/batch",
        json={
            "tenant_id": tenant,
            "messages": [
                {"conversation_id": "c1", "role": "user", "content": "fine"},
                {"conversation_id": "c1", "role": "user", "content": "short",
                 "embedding": [1.0], "embedding_model": CLIENT_MODEL},
            ],
        },
    )
    assert batch.status_code == 422
    assert batch.json()["error"] == "embedding_dimension_mismatch"
    assert batch.json()["detail"]["message"].startswith("messages[1]")


async def test_batches_store_given_vectors_even_when_embedding_is_asynchronous(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine, tenant: str
) -> None:
    settings = settings_factory(async_embeddings=True)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        response = await client.post(
            "/v1/messages/batch",
            json={
                "tenant_id": tenant,
                "messages": [
                    {"conversation_id": "c1", "role": "user", "content": "queued for the worker"},
                    {"conversation_id": "c1", "role": "user", "content": "my own vector",
                     "embedding": unit(5), "embedding_model": CLIENT_MODEL},
                ],
            },
        )
        assert response.status_code in (200, 202), response.text
        items = response.json()["items"]
        assert [item["embedding_status"] for item in items] == ["pending", "ready"]
        own = await stored(db_engine, items[1]["message_id"])
        assert as_list(own["embedding"]) == unit(5)
        assert own["embedding_model"] == CLIENT_MODEL
        assert own["embedding_supplied"] is True
        single = await write(client, tenant, "one of my own", unit(6))
        assert single.status_code == 200
        assert single.json()["embedding_status"] == "ready"


async def test_search_by_vector_skips_the_model_and_is_vector_only(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    near = (await write(client, tenant, "alpha", unit(10))).json()["message_id"]
    middle = (await write(client, tenant, "beta", unit(10, 11))).json()["message_id"]
    far = (await write(client, tenant, "gamma", unit(12))).json()["message_id"]
    service_row = await remember(client, tenant, "a text the service embedded")

    calls: list[str] = []
    original = client.embedder.embed_query

    async def counting(query: str) -> list[float]:
        calls.append(query)
        return await original(query)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(client.embedder, "embed_query", counting)
        response = await client.post(
            "/v1/memory/search",
            json={"tenant_id": tenant, "vector": unit(10), "embedding_model": CLIENT_MODEL,
                  "top_k": 10},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert calls == []
    assert body["mode"] == "vector"
    assert body["embedding_model"] == CLIENT_MODEL
    found = [item["message_id"] for item in body["items"]]
    assert found[:2] == [near, middle]
    assert service_row not in found  # another model's space is never compared
    assert far not in found or found.index(far) == 2
    similarities = {item["message_id"]: item["similarity"] for item in body["items"]}
    assert math.isclose(similarities[near], 1.0, abs_tol=1e-6)
    assert math.isclose(similarities[middle], 1 / math.sqrt(2), abs_tol=1e-6)

    # Without embedding_model: the service's own vectors.
    vector = as_list((await stored(db_engine, service_row))["embedding"])
    own = await client.post("/v1/memory/search", json={"tenant_id": tenant, "vector": vector})
    assert own.status_code == 200
    assert own.json()["items"][0]["message_id"] == service_row

    hybrid = await client.post(
        "/v1/memory/search", json={"tenant_id": tenant, "vector": unit(1), "mode": "hybrid"}
    )
    assert hybrid.status_code == 422
    assert "vector-only" in hybrid.text
    both = await client.post(
        "/v1/memory/search", json={"tenant_id": tenant, "vector": unit(1), "query": "alpha"}
    )
    assert both.status_code == 422
    wrong = await client.post("/v1/memory/search", json={"tenant_id": tenant, "vector": [1.0]})
    assert wrong.status_code == 422
    assert wrong.json()["error"] == "embedding_dimension_mismatch"
    assert wrong.json()["detail"]["field"] == "vector"
