"""POST /v1/messages/batch: all or nothing, one model call, one INSERT, idempotent per item."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from memory_layer.embeddings.providers.base import EmbeddingError
from memory_layer.messages.importance import importance_for
from tests.fixtures.app import ADMIN_KEY, SERVICE_KEY, running_client
from tests.fixtures.tenants import new_tenant, tenant_key

BATCH = "/v1/messages/batch"


def item(content: str, **extra: Any) -> dict[str, Any]:
    return {"conversation_id": "c", "role": "user", "content": content, **extra}


async def rows(engine: AsyncEngine, tenant: str) -> list[Any]:
    async with engine.connect() as connection:
        result = await connection.execute(
            text(
                "SELECT id, content, kind, embedding_status, vector_dims(embedding) AS dims, "
                "client_message_id, metadata, created_at, importance, embedding_error "
                "FROM messages WHERE tenant_id = :t ORDER BY content"
            ),
            {"t": tenant},
        )
        return list(result)


class Calls:
    """Counts the provider's document calls and the INSERT statements an app sends."""

    def __init__(self) -> None:
        self.embeds: list[list[str]] = []
        self.inserts = 0


@asynccontextmanager
async def counted(client: httpx.AsyncClient) -> AsyncIterator[Calls]:
    calls = Calls()
    app = client.app  # type: ignore[attr-defined]
    embedder = app.state.embedder
    original = embedder.embed_documents

    async def embed_documents(texts: list[str]) -> list[list[float]]:
        calls.embeds.append(list(texts))
        result: list[list[float]] = await original(texts)
        return result

    def on_execute(*args: Any) -> None:
        statement: str = args[2]
        if statement.lstrip().upper().startswith("INSERT INTO MESSAGES"):
            calls.inserts += 1

    embedder.embed_documents = embed_documents
    sync_engine = app.state.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", on_execute)
    try:
        yield calls
    finally:
        event.remove(sync_engine, "before_cursor_execute", on_execute)
        embedder.embed_documents = original


async def test_a_batch_is_embedded_in_one_call_and_inserted_in_one_statement(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine
) -> None:
    messages = [
        item("first: the user's flat is on the fourth floor", kind="fact", metadata={"n": 1}),
        item("second: ok thanks", role="assistant"),
        item("third: imported from last year", created_at="2025-01-02T03:04:05+00:00",
             importance_override=0.05, user_id="u-1"),
    ]
    async with counted(client) as calls:
        response = await client.post(BATCH, json={"tenant_id": tenant, "messages": messages})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == 3
    assert [result["status"] for result in body["items"]] == [200, 200, 200]
    assert [result["embedding_status"] for result in body["items"]] == ["ready"] * 3
    assert [result["replayed"] for result in body["items"]] == [False] * 3
    assert calls.embeds == [[m["content"] for m in messages]]
    assert calls.inserts == 1

    stored = await rows(db_engine, tenant)
    # In request order (the contents sort the same way), each with what its item said.
    assert [str(row.id) for row in stored] == [result["message_id"] for result in body["items"]]
    assert [(row.kind, row.embedding_status, row.dims) for row in stored] == [
        ("fact", "ready", 384), ("message", "ready", 384), ("message", "ready", 384),
    ]
    assert stored[0].metadata == {"n": 1}
    assert stored[2].created_at.isoformat().startswith("2025-01-02T03:04:05")
    assert stored[2].importance == pytest.approx(0.05)
    read = await client.get(body["items"][1]["status_url"])
    assert read.json()["role"] == "assistant"
    # Computed as for a single write.
    assert read.json()["importance"] == pytest.approx(importance_for("assistant", "second: ok thanks"))
    searched = await client.post(
        "/v1/memory/search", json={"tenant_id": tenant, "query": "fourth floor flat", "mode": "vector"}
    )
    assert searched.json()["items"][0]["message_id"] == body["items"][0]["message_id"]


async def test_async_mode_queues_the_whole_batch(
    settings_factory: Callable[..., Settings], tenant: str, db_engine: AsyncEngine
) -> None:
    async with running_client(
        settings_factory(async_embeddings=True), headers={"X-API-Key": ADMIN_KEY}
    ) as client, counted(client) as calls:
        response = await client.post(
            BATCH, json={"tenant_id": tenant, "messages": [item("a b"), item("c d")]}
        )
        keyword = await client.post(
            "/v1/memory/search", json={"tenant_id": tenant, "query": "d", "mode": "keyword"}
        )
    assert response.status_code == 202, response.text
    assert [result["status"] for result in response.json()["items"]] == [202, 202]
    assert calls.embeds == []
    async with db_engine.connect() as connection:
        due = (
            await connection.execute(
                text(
                    "SELECT count(*) FROM messages WHERE tenant_id = :t AND embedding IS NULL "
                    "AND embedding_status = 'pending' AND embedding_next_attempt_at <= now()"
                ),
                {"t": tenant},
            )
        ).scalar_one()
    assert due == 2
    # Pending rows are found by keyword search at once.
    assert [i["message_id"] for i in keyword.json()["items"]] == [response.json()["items"][1]["message_id"]]


async def test_a_provider_failure_stores_the_batch_pending_with_the_error(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine
) -> None:
    async def broken(texts: list[str]) -> list[list[float]]:
        raise EmbeddingError("quota exhausted", kind="rate_limited")

    client.app.state.embedder.embed_documents = broken  # type: ignore[attr-defined]
    response = await client.post(BATCH, json={"tenant_id": tenant, "messages": [item("a"), item("b")]})
    assert response.status_code == 202, response.text
    assert [r["status"] for r in response.json()["items"]] == [202, 202]
    stored = await rows(db_engine, tenant)
    assert [(row.embedding_status, row.embedding_error) for row in stored] == [
        ("pending", "rate_limited: quota exhausted")
    ] * 2


async def test_items_are_idempotent_across_requests_and_within_the_batch(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine
) -> None:
    messages = [
        item("one", client_message_id="k-1"),
        item("two", client_message_id="k-2"),
        item("one", client_message_id="k-1"),  # the same item twice in one batch
        item("three"),
    ]
    first = await client.post(BATCH, json={"tenant_id": tenant, "messages": messages})
    assert first.status_code == 200, first.text
    results = first.json()["items"]
    assert [r["replayed"] for r in results] == [False, False, True, False]
    assert results[2]["message_id"] == results[0]["message_id"]
    assert len(await rows(db_engine, tenant)) == 3

    # The whole batch retried: the keyed items replay without a model call; the unkeyed one is new.
    async with counted(client) as calls:
        retry = await client.post(BATCH, json={"tenant_id": tenant, "messages": messages})
    assert retry.status_code == 200, retry.text
    again = retry.json()["items"]
    assert [r["replayed"] for r in again] == [True, True, True, False]
    assert [r["message_id"] for r in again[:3]] == [r["message_id"] for r in results[:3]]
    assert again[3]["message_id"] != results[3]["message_id"]
    assert calls.embeds == [["three"]]
    assert len(await rows(db_engine, tenant)) == 4

    # A single write of a batch item's key replays it too.
    single = await client.post(
        "/v1/messages", json={"tenant_id": tenant, **item("two", client_message_id="k-2")}
    )
    assert single.json()["message_id"] == results[1]["message_id"]
    assert single.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize(
    ("stored_first", "messages", "detail"),
    [
        (None, [item("a", client_message_id="k"), item("b"), item("c", client_message_id="k")],
         "messages[2]: client_message_id 'k' is also used by messages[0]"),
        ([item("a", client_message_id="k")], [item("x"), item("b", client_message_id="k")],
         "messages[1]: client_message_id 'k' was already used"),
        ([item("a", client_message_id="k")], [item("x"), item("a", client_message_id="k", kind="fact")],
         "messages[1]: client_message_id 'k' was already used"),
    ],
    ids=["within-the-batch", "stored-earlier", "other-kind"],
)
async def test_a_reused_key_is_a_409_naming_the_item_and_nothing_is_stored(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine,
    stored_first: list[dict[str, Any]] | None, messages: list[dict[str, Any]], detail: str,
) -> None:
    if stored_first:
        await client.post(BATCH, json={"tenant_id": tenant, "messages": stored_first})
    before = len(await rows(db_engine, tenant))
    response = await client.post(BATCH, json={"tenant_id": tenant, "messages": messages})
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "idempotency_key_reused"
    assert response.json()["detail"].startswith(detail)
    assert len(await rows(db_engine, tenant)) == before


@pytest.mark.parametrize(
    ("bad", "loc"),
    [
        ({"content": "nul \u0000"}, ["body", "messages", 1, "content"]),
        ({"content": "  "}, ["body", "messages", 1, "content"]),
        ({"role": "robot"}, ["body", "messages", 1, "role"]),
        ({"kind": "rumour"}, ["body", "messages", 1, "kind"]),
        ({"tenant_id": "other"}, ["body", "messages", 1, "tenant_id"]),
        ({"created_at": "2025-01-02T03:04:05"}, ["body", "messages", 1, "created_at"]),
    ],
)
async def test_a_schema_error_is_a_422_naming_the_item_and_nothing_is_stored(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine, bad: dict[str, Any],
    loc: list[Any],
) -> None:
    messages = [item("fine"), {**item("bad"), **bad}, item("fine too")]
    response = await client.post(BATCH, json={"tenant_id": tenant, "messages": messages})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert loc in [err["loc"] for err in response.json()["detail"]]
    assert await rows(db_engine, tenant) == []


async def test_the_service_s_own_checks_name_the_item_and_store_nothing(
    settings_factory: Callable[..., Settings], tenant: str, db_engine: AsyncEngine
) -> None:
    settings = settings_factory(max_content_chars=20, max_metadata_bytes=32, max_batch_messages=3)
    cases = [
        ([item("ok"), item("ok"), item("x" * 21)], "content_too_long", "messages[2]: "),
        ([item("ok"), item("ok", metadata={"k": "v" * 40})], "metadata_too_large", "messages[1]: "),
        ([item("ok", metadata={"k": "a\u0000b"})], "invalid_metadata", "messages[0]: "),
        ([item("ok", created_at="2999-01-01T00:00:00Z"), item("ok")], "invalid_created_at",
         "messages[0]: "),
        ([item("ok")] * 4, "batch_too_large", "the batch has 4 messages; the limit is 3"),
    ]
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client, counted(
        client
    ) as calls:
        for messages, code, detail in cases:
            response = await client.post(BATCH, json={"tenant_id": tenant, "messages": messages})
            assert response.status_code == 422, response.text
            assert response.json()["error"] == code
            assert response.json()["detail"].startswith(detail), response.json()
        empty = await client.post(BATCH, json={"tenant_id": tenant, "messages": []})
        assert empty.status_code == 422
        exact = await client.post(
            BATCH, json={"tenant_id": tenant, "messages": [item("x" * 20)] * 3}
        )
        assert exact.status_code == 200, exact.text
    # Nothing was embedded for a refused batch either.
    assert calls.embeds == [["x" * 20] * 3]
    assert len(await rows(db_engine, tenant)) == 3


async def test_the_batch_route_takes_bodies_larger_than_a_single_write(
    settings_factory: Callable[..., Settings], tenant: str, db_engine: AsyncEngine
) -> None:
    settings = settings_factory(max_content_chars=100, max_metadata_bytes=64, max_batch_messages=50)
    single_limit, batch_limit = settings.max_body_bytes, settings.max_batch_body_bytes
    assert batch_limit == 50 * (4 * 100 + 2 * 64 + 1024) + 65_536
    # Valid items with padding metadata, more bytes in all than one write may send.
    messages = [item("y" * 100, metadata={"p": "z" * 50}) for _ in range(50)]
    padding = " " * (single_limit + 1 - len(json.dumps({"tenant_id": tenant, "messages": messages})))
    payload = json.dumps({"tenant_id": tenant, "messages": messages}) + padding
    assert single_limit < len(payload) < batch_limit
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        accepted = await client.post(
            BATCH, content=payload, headers={"content-type": "application/json"}
        )
        as_single = await client.post(
            "/v1/messages", content=payload, headers={"content-type": "application/json"}
        )
        too_big = await client.post(
            BATCH, content=" " * (batch_limit + 1), headers={"content-type": "application/json"}
        )
    assert accepted.status_code == 200, accepted.text[:300]
    assert accepted.json()["total"] == 50
    assert as_single.status_code == 413
    assert too_big.status_code == 413
    assert too_big.json()["error"] == "payload_too_large"
    assert len(await rows(db_engine, tenant)) == 50


async def test_a_tenant_key_writes_its_own_tenant_only(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    mine, theirs = new_tenant(), new_tenant()
    key = await tenant_key(db_engine, mine)
    async with running_client(settings_factory(), headers={"X-API-Key": key}) as client:
        walled = await client.post(BATCH, json={"tenant_id": theirs, "messages": [item("x")]})
        own = await client.post(BATCH, json={"messages": [item("mine")]})
        named_own = await client.post(BATCH, json={"tenant_id": mine, "messages": [item("also")]})
    assert walled.status_code == 403
    assert walled.json()["error"] == "tenant_mismatch"
    assert own.status_code == named_own.status_code == 200
    assert await rows(db_engine, theirs) == []
    assert [row.content for row in await rows(db_engine, mine)] == ["also", "mine"]


async def test_a_service_key_must_name_the_tenant(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_client(settings_factory(), headers={"X-API-Key": SERVICE_KEY}) as client:
        response = await client.post(BATCH, json={"messages": [item("x")]})
    assert response.status_code == 422
    assert response.json()["error"] == "tenant_required"


async def test_concurrent_batches_with_the_same_keys_store_each_message_once(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine
) -> None:
    import asyncio

    messages = [item(f"m{i}", client_message_id=f"k{i}") for i in range(20)]
    responses = await asyncio.gather(
        *(client.post(BATCH, json={"tenant_id": tenant, "messages": messages}) for _ in range(4))
    )
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses]
    ids = {tuple(i["message_id"] for i in r.json()["items"]) for r in responses}
    assert len(ids) == 1
    fresh = [sum(not i["replayed"] for i in r.json()["items"]) for r in responses]
    assert sum(fresh) == 20
    assert len(await rows(db_engine, tenant)) == 20


async def test_the_history_shows_a_batch_in_the_order_it_was_sent(
    client: httpx.AsyncClient, tenant: str
) -> None:
    contents = [f"turn {i:02d}" for i in range(30)]
    stored = await client.post(
        BATCH, json={"tenant_id": tenant, "messages": [item(c) for c in contents]}
    )
    assert stored.status_code == 200, stored.text
    history = await client.get(
        "/v1/conversations/c/messages", params={"tenant_id": tenant, "limit": 100}
    )
    assert history.status_code == 200, history.text
    assert [message["content"] for message in history.json()["items"]] == contents
