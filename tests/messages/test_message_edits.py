"""PATCH and DELETE /v1/messages/{id}: edits are validated and re-embedded, deletes are final,
and neither reaches across tenants."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from memory_layer.embeddings.providers.base import EmbeddingError
from memory_layer.embeddings.providers.fake import FakeEmbeddingProvider
from memory_layer.embeddings.repository import EmbeddingJobRepository, Job
from memory_layer.kit.db.engine import create_sessionmaker
from memory_layer.messages.service import merge_patch
from tests.fixtures.app import ADMIN_KEY, SERVICE_KEY, running_client
from tests.fixtures.tenants import new_tenant, tenant_key

OLD = "We hiked up the Matterhorn glacier trail"
NEW = "My cat Whiskers hates the vacuum cleaner"


async def write(client: httpx.AsyncClient, tenant: str, content: str = OLD, **extra: Any) -> Any:
    body = {"tenant_id": tenant, "conversation_id": "c", "role": "user", "content": content}
    body.update(extra)
    response = await client.post("/v1/messages", json=body)
    assert response.status_code in (200, 202), response.text
    return response.json()


async def hits(client: httpx.AsyncClient, tenant: str, query: str, mode: str) -> list[str]:
    response = await client.post(
        "/v1/memory/search", json={"tenant_id": tenant, "query": query, "mode": mode, "top_k": 10}
    )
    assert response.status_code == 200, response.text
    return [item["message_id"] for item in response.json()["items"]]


async def stored(engine: AsyncEngine, tenant: str, message_id: str) -> Any:
    async with engine.connect() as connection:
        return (
            await connection.execute(
                text(
                    "SELECT content, CAST(embedding AS real[]) AS embedding, embedding_status, "
                    "embedding_model, embedding_attempts, embedding_next_attempt_at <= now() AS due, "
                    "embedding_lease_owner, embedding_error, metadata, kind, importance "
                    "FROM messages WHERE tenant_id = :t AND id = :id"
                ),
                {"t": tenant, "id": message_id},
            )
        ).one_or_none()


def patch_url(tenant: str, message_id: str) -> str:
    return f"/v1/messages/{message_id}?tenant_id={tenant}"


async def test_new_content_is_embedded_again_and_found_by_its_new_text(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine
) -> None:
    message = await write(client, tenant)
    other = await write(client, tenant, "Lunch was a cheese fondue in Zermatt")
    assert message["message_id"] in await hits(client, tenant, "Matterhorn glacier", "keyword")

    response = await client.patch(patch_url(tenant, message["message_id"]), json={"content": NEW})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["content"] == NEW
    assert body["embedding_status"] == "ready"
    assert body["embedding_attempts"] == 0
    assert body["created_at"] == message["created_at"]
    assert "Location" not in response.headers

    row = await stored(db_engine, tenant, message["message_id"])
    assert list(row.embedding) == pytest.approx(FakeEmbeddingProvider(384).embed_sync(NEW))
    for mode in ("keyword", "vector", "hybrid"):
        assert (await hits(client, tenant, "cat Whiskers vacuum", mode))[0] == message["message_id"]
    # The old words find it no more: not in full text, and its vector is the new text's.
    assert message["message_id"] not in await hits(client, tenant, "Matterhorn glacier", "keyword")
    by_old_vector = await client.post(
        "/v1/memory/search", json={"tenant_id": tenant, "query": OLD, "mode": "vector", "top_k": 10}
    )
    similarity = {i["message_id"]: i["similarity"] for i in by_old_vector.json()["items"]}
    assert similarity[message["message_id"]] < 0.3
    assert other["message_id"] in similarity


async def test_new_content_in_async_mode_is_pending_for_the_worker(
    settings_factory: Callable[..., Settings], tenant: str, db_engine: AsyncEngine
) -> None:
    async with running_client(
        settings_factory(async_embeddings=True), headers={"X-API-Key": ADMIN_KEY}
    ) as client:
        message = await write(client, tenant)
        # Embedded first (as the worker would), so the edit has a vector to throw away.
        async with db_engine.begin() as connection:
            await connection.execute(
                text(
                    "UPDATE messages SET embedding = CAST(:v AS vector), embedding_status = 'ready', "
                    "embedding_model = 'fake-hash-384', embedded_at = now(), "
                    "embedding_next_attempt_at = NULL, embedding_attempts = 1 "
                    "WHERE tenant_id = :t AND id = :id"
                ),
                {"t": tenant, "id": message["message_id"],
                 "v": str(FakeEmbeddingProvider(384).embed_sync(OLD))},
            )
        assert message["message_id"] in await hits(client, tenant, OLD, "vector")

        response = await client.patch(patch_url(tenant, message["message_id"]), json={"content": NEW})
        assert response.status_code == 202, response.text
        body = response.json()
        assert response.headers["Location"] == body["status_url"]
        assert body["embedding_status"] == "pending"
        assert body["embedding_model"] is None
        assert body["embedded_at"] is None
        row = await stored(db_engine, tenant, message["message_id"])
        # Queued afresh: no vector, due now, a full attempt budget, no lease.
        assert (row.embedding, row.embedding_status, row.embedding_attempts, row.due,
                row.embedding_lease_owner) == (None, "pending", 0, True, None)
        # Until the worker embeds it, keyword search finds it by the new text only, and vector
        # search not at all (its old vector is gone).
        assert await hits(client, tenant, "Whiskers", "keyword") == [message["message_id"]]
        assert await hits(client, tenant, "Matterhorn", "keyword") == []
        assert await hits(client, tenant, OLD, "vector") == []


async def test_a_provider_failure_leaves_the_edit_pending_with_the_error(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine
) -> None:
    message = await write(client, tenant)

    async def broken(texts: list[str]) -> list[list[float]]:
        raise EmbeddingError("model unavailable", kind="unavailable")

    client.app.state.embedder.embed_documents = broken  # type: ignore[attr-defined]
    response = await client.patch(patch_url(tenant, message["message_id"]), json={"content": NEW})
    assert response.status_code == 202, response.text
    assert response.json()["embedding_error"] == "unavailable: model unavailable"
    row = await stored(db_engine, tenant, message["message_id"])
    assert (row.content, row.embedding, row.embedding_status, row.due) == (NEW, None, "pending", True)


async def test_a_worker_finishing_the_old_text_cannot_overwrite_the_edit(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine
) -> None:
    message = await write(client, tenant)
    owner = uuid.uuid4()
    # As if a worker had claimed the message (pending, leased) and were still embedding OLD.
    async with db_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE messages SET embedding_status = 'pending', embedding_lease_owner = :o, "
                "embedding_lease_expires_at = now() + interval '1 minute' "
                "WHERE tenant_id = :t AND id = :id"
            ),
            {"o": owner, "t": tenant, "id": message["message_id"]},
        )
    response = await client.patch(patch_url(tenant, message["message_id"]), json={"content": NEW})
    assert response.status_code == 200, response.text

    job = Job(tenant, uuid.UUID(message["message_id"]), OLD, 1)
    old_vector = FakeEmbeddingProvider(384).embed_sync(OLD)
    async with create_sessionmaker(db_engine).begin() as session:
        written = await EmbeddingJobRepository(session).complete(owner, "fake-hash-384",
                                                                 [(job, old_vector)])
    assert written == set()
    row = await stored(db_engine, tenant, message["message_id"])
    assert list(row.embedding) == pytest.approx(FakeEmbeddingProvider(384).embed_sync(NEW))


async def test_metadata_merges_by_default_and_can_be_replaced(
    client: httpx.AsyncClient, tenant: str
) -> None:
    message = await write(
        client, tenant, metadata={"channel": "web", "tags": {"a": 1, "b": 2}, "drop": True}
    )
    url = patch_url(tenant, message["message_id"])
    merged = await client.patch(
        url, json={"metadata": {"lang": "en", "tags": {"b": None, "c": 3}, "drop": None}}
    )
    assert merged.status_code == 200, merged.text
    assert merged.json()["metadata"] == {"channel": "web", "lang": "en", "tags": {"a": 1, "c": 3}}
    # Metadata alone: the vector is kept.
    assert merged.json()["embedded_at"] == message["embedded_at"]

    replaced = await client.patch(url, json={"metadata": {"only": 1}, "metadata_mode": "replace"})
    assert replaced.json()["metadata"] == {"only": 1}
    emptied = await client.patch(url, json={"metadata": {}, "metadata_mode": "replace"})
    assert emptied.json()["metadata"] == {}


async def test_importance_and_kind_change_alone(client: httpx.AsyncClient, tenant: str) -> None:
    message = await write(client, tenant)
    response = await client.patch(
        patch_url(tenant, message["message_id"]), json={"importance": 0.95, "kind": "fact"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["importance"], body["kind"], body["content"]) == (0.95, "fact", OLD)
    assert body["embedded_at"] == message["embedded_at"]
    searched = await client.post(
        "/v1/memory/search", json={"tenant_id": tenant, "query": "Matterhorn", "kind": "fact"}
    )
    assert [item["message_id"] for item in searched.json()["items"]] == [message["message_id"]]


async def test_same_content_keeps_the_vector(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine
) -> None:
    message = await write(client, tenant)
    response = await client.patch(patch_url(tenant, message["message_id"]), json={"content": OLD})
    assert response.status_code == 200
    assert response.json()["embedded_at"] == message["embedded_at"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"content": "nul \u0000 byte"}, "content"),
        ({"content": "   "}, "content"),
        ({"content": ""}, "content"),
        ({"importance": 1.5}, "importance"),
        ({"kind": "rumour"}, "kind"),
        ({"metadata": ["not", "an", "object"]}, "metadata"),
        ({"metadata": {}, "metadata_mode": "upsert"}, "metadata_mode"),
        ({"tenant_id": "x"}, "tenant_id"),
        ({}, "body"),
        ({"metadata_mode": "replace"}, "body"),
    ],
)
async def test_bad_edits_are_a_422_and_change_nothing(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine, body: dict[str, Any],
    field: str,
) -> None:
    message = await write(client, tenant, metadata={"k": "v"})
    response = await client.patch(patch_url(tenant, message["message_id"]), json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert any(field in [str(part) for part in err["loc"]] for err in response.json()["detail"])
    row = await stored(db_engine, tenant, message["message_id"])
    assert (row.content, row.metadata, row.embedding_status) == (OLD, {"k": "v"}, "ready")


async def test_edits_obey_the_limits_of_new_messages(
    settings_factory: Callable[..., Settings], tenant: str, db_engine: AsyncEngine
) -> None:
    settings = settings_factory(max_content_chars=50, max_metadata_bytes=40)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        message = await write(client, tenant, metadata={"a": "1234567890"})
        url = patch_url(tenant, message["message_id"])
        too_long = await client.patch(url, json={"content": "x" * 51})
        # The merged result counts: each patch is small, together they pass the limit.
        too_large = await client.patch(url, json={"metadata": {"b": "1234567890abcdefghij"}})
        replaced_too_large = await client.patch(
            url, json={"metadata": {"c": "x" * 40}, "metadata_mode": "replace"}
        )
        nul = await client.patch(url, json={"metadata": {"k": "a\u0000b"}})
        exact = await client.patch(url, json={"content": "y" * 50})
    assert too_long.status_code == 422
    assert too_long.json()["error"] == "content_too_long"
    for response in (too_large, replaced_too_large):
        assert response.status_code == 422
        assert response.json()["error"] == "metadata_too_large"
    assert nul.status_code == 422
    assert nul.json()["error"] == "invalid_metadata"
    assert exact.status_code == 200
    row = await stored(db_engine, tenant, message["message_id"])
    assert (row.content, row.metadata) == ("y" * 50, {"a": "1234567890"})


async def test_edits_and_deletes_outside_the_tenant_are_not_found(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine
) -> None:
    message = await write(client, tenant)
    elsewhere = f"/v1/messages/{message['message_id']}?tenant_id={new_tenant()}"
    missing = f"/v1/messages/{uuid.uuid4()}?tenant_id={tenant}"
    for url in (elsewhere, missing):
        edited = await client.patch(url, json={"content": NEW})
        deleted = await client.delete(url)
        for response in (edited, deleted):
            assert response.status_code == 404, response.text
            assert response.json()["error"] == "message_not_found"
    malformed = await client.delete(f"/v1/messages/not-a-uuid?tenant_id={tenant}")
    assert malformed.status_code == 422
    row = await stored(db_engine, tenant, message["message_id"])
    assert row.content == OLD


async def test_a_tenant_key_cannot_edit_or_delete_another_tenant_s_message(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    mine, theirs = new_tenant(), new_tenant()
    key = await tenant_key(db_engine, mine)
    async with running_client(settings_factory()) as client:
        their = (await client.post(
            "/v1/messages", json={"tenant_id": theirs, "conversation_id": "c", "role": "user",
                                  "content": OLD}, headers={"X-API-Key": SERVICE_KEY},
        )).json()
        as_me = {"X-API-Key": key}
        # Guessing the id: the key acts for its own tenant, where no such message exists.
        guessed_edit = await client.patch(
            f"/v1/messages/{their['message_id']}", json={"content": NEW}, headers=as_me
        )
        guessed_delete = await client.delete(f"/v1/messages/{their['message_id']}", headers=as_me)
        for response in (guessed_edit, guessed_delete):
            assert response.status_code == 404, response.text
            assert response.json()["error"] == "message_not_found"
        # Naming the other tenant: refused outright.
        named = await client.delete(their["status_url"], headers=as_me)
        assert named.status_code == 403
        assert named.json()["error"] == "tenant_mismatch"
        still_there = await client.get(their["status_url"], headers={"X-API-Key": SERVICE_KEY})
    assert still_there.status_code == 200
    assert still_there.json()["content"] == OLD


async def test_delete_removes_the_message_for_good(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine
) -> None:
    message = await write(client, tenant, client_message_id="m-1")
    keep = await write(client, tenant, "Matterhorn again, another day")
    response = await client.delete(patch_url(tenant, message["message_id"]))
    assert response.status_code == 200, response.text
    assert response.json() == {"deleted": 1}
    assert await stored(db_engine, tenant, message["message_id"]) is None
    assert await hits(client, tenant, "Matterhorn", "hybrid") == [keep["message_id"]]
    again = await client.delete(patch_url(tenant, message["message_id"]))
    assert again.status_code == 404
    read = await client.get(patch_url(tenant, message["message_id"]))
    assert read.status_code == 404
    # Its client_message_id is free again: the same write stores a new message.
    rewritten = await write(client, tenant, client_message_id="m-1")
    assert rewritten["message_id"] != message["message_id"]


def test_merge_patch_follows_rfc_7396() -> None:
    # Examples from RFC 7396, appendix A.
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": "b", "b": "c"}, {"a": None}) == {"b": "c"}
    assert merge_patch({"a": ["b"]}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}
    assert merge_patch({"a": "foo"}, "bar") == "bar"


async def test_openapi_names_and_documents_every_message_route(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    expected = {
        # 413 is added to every operation, 400 to those with a body (kit/http/openapi.py).
        ("post", "/v1/messages"): ("create_message", {200, 202, 400, 401, 403, 409, 413, 422, 429, 500, 503}),
        ("post", "/v1/messages/batch"): (
            "create_messages_batch", {200, 202, 400, 401, 403, 409, 413, 422, 429, 500, 503}
        ),
        ("get", "/v1/messages/{message_id}"): (
            "read_message", {200, 401, 403, 404, 413, 422, 429, 500, 503}
        ),
        ("patch", "/v1/messages/{message_id}"): (
            "update_message", {200, 202, 400, 401, 403, 404, 409, 413, 422, 429, 500, 503}
        ),
        ("delete", "/v1/messages/{message_id}"): (
            "delete_message", {200, 401, 403, 404, 413, 422, 429, 500, 503}
        ),
    }
    for (method, path), (operation_id, statuses) in expected.items():
        operation = paths[path][method]
        assert operation["operationId"] == operation_id
        assert {int(code) for code in operation["responses"]} == statuses, (method, path)
        assert operation["description"] or operation["summary"]
