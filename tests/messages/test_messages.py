"""POST /v1/messages and GET /v1/messages/{id}: validation, idempotency, nothing half-written."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from tests.fixtures.app import ADMIN_KEY, AppClient, running_client
from tests.fixtures.messages import count_rows, message_body
from tests.support.metrics import sample_value, scrape


def message(tenant: str, **overrides: Any) -> dict[str, Any]:
    overrides.setdefault('content', 'I love Python programming')
    return message_body(tenant, **overrides)


async def test_stores_a_message_with_embedding_and_importance(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine
) -> None:
    response = await client.post(
        "/v1/messages", json=message(tenant, user_id="u-1", metadata={"channel": "web"})
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tenant_id"] == tenant
    assert body["conversation_id"] == "conv-123"
    assert body["role"] == "user"
    assert body["content"] == "I love Python programming"
    assert body["metadata"] == {"channel": "web"}
    assert body["user_id"] == "u-1"
    assert body["importance"] == pytest.approx(0.7)
    assert body["embedding_status"] == "ready"
    assert body["embedding_model"] == "fake-hash-384"
    assert response.headers["Idempotent-Replayed"] == "false"
    async with db_engine.connect() as connection:
        row = (
            await connection.execute(
                text("SELECT vector_dims(embedding), embedding_status FROM messages "
                     "WHERE tenant_id = :t AND id = :id"),
                {"t": tenant, "id": body["message_id"]},
            )
        ).one()
    assert row == (384, "ready")


async def test_importance_override_wins(client: httpx.AsyncClient, tenant: str) -> None:
    response = await client.post("/v1/messages", json=message(tenant, importance_override=0.05))
    assert response.status_code == 200
    assert response.json()["importance"] == pytest.approx(0.05)


async def test_client_supplied_created_at_is_kept(client: httpx.AsyncClient, tenant: str) -> None:
    response = await client.post(
        "/v1/messages", json=message(tenant, created_at="2025-01-02T03:04:05+00:00")
    )
    assert response.status_code == 200
    assert response.json()["created_at"].startswith("2025-01-02T03:04:05")


async def test_retry_with_same_client_message_id_returns_the_first_message(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine
) -> None:
    body = message(tenant, client_message_id="msg-1")
    first = await client.post("/v1/messages", json=body)
    second = await client.post("/v1/messages", json=body)
    assert first.status_code == second.status_code == 200
    assert first.json()["message_id"] == second.json()["message_id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert await count_rows(db_engine, tenant) == 1


async def test_same_client_message_id_in_another_tenant_is_a_new_message(
    client: httpx.AsyncClient, tenant: str
) -> None:
    other = f"{tenant}-other"
    first = await client.post("/v1/messages", json=message(tenant, client_message_id="m"))
    second = await client.post("/v1/messages", json=message(other, client_message_id="m"))
    assert first.json()["message_id"] != second.json()["message_id"]


async def test_reusing_a_client_message_id_for_other_content_is_a_conflict(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine
) -> None:
    await client.post("/v1/messages", json=message(tenant, client_message_id="dup"))
    response = await client.post(
        "/v1/messages", json=message(tenant, client_message_id="dup", content="something else")
    )
    assert response.status_code == 409
    assert response.json()["error"] == "idempotency_key_reused"
    assert await count_rows(db_engine, tenant) == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"content": "nul \u0000 byte"}, "content"),
        ({"content": ""}, "content"),
        ({"content": "   \n\t "}, "content"),
        ({"role": "robot"}, "role"),
        ({"metadata": ["not", "an", "object"]}, "metadata"),
        ({"metadata": "text"}, "metadata"),
        ({"importance_override": 1.5}, "importance_override"),
        ({"conversation_id": ""}, "conversation_id"),
        ({"conversation_id": "has space"}, "conversation_id"),
        ({"tenant_id": "x" * 129}, "tenant_id"),
        ({"created_at": "2025-01-02T03:04:05"}, "created_at"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
async def test_bad_input_is_a_422_with_the_field_named_and_nothing_stored(
    client: httpx.AsyncClient,
    tenant: str,
    db_engine: AsyncEngine,
    overrides: dict[str, Any],
    field: str,
) -> None:
    response = await client.post("/v1/messages", json=message(tenant, **overrides))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    assert any(field in [str(part) for part in err["loc"]] for err in body["detail"]), body
    assert await count_rows(db_engine, tenant) == 0


async def test_malformed_json_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages", content=b'{"tenant_id": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_metadata_with_nul_is_rejected(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine
) -> None:
    response = await client.post("/v1/messages", json=message(tenant, metadata={"k": "a\u0000b"}))
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_metadata"
    assert await count_rows(db_engine, tenant) == 0


async def test_future_created_at_is_rejected(client: httpx.AsyncClient, tenant: str) -> None:
    response = await client.post(
        "/v1/messages", json=message(tenant, created_at="2999-01-01T00:00:00Z")
    )
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_created_at"


async def test_limits_from_settings_are_enforced_without_truncation(
    settings_factory: Callable[..., Settings], tenant: str, db_engine: AsyncEngine
) -> None:
    settings = settings_factory(max_content_chars=20, max_metadata_bytes=32)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        exact = await client.post("/v1/messages", json=message(tenant, content="x" * 20))
        too_long = await client.post("/v1/messages", json=message(tenant, content="x" * 21))
        big_metadata = await client.post(
            "/v1/messages", json=message(tenant, content="ok", metadata={"k": "v" * 40})
        )
    assert exact.status_code == 200
    assert exact.json()["content"] == "x" * 20
    assert too_long.status_code == 422
    assert too_long.json()["error"] == "content_too_long"
    assert "MEMORY_MAX_CONTENT_CHARS" in too_long.json()["detail"]
    assert big_metadata.status_code == 422
    assert big_metadata.json()["error"] == "metadata_too_large"
    assert await count_rows(db_engine, tenant) == 1


async def test_missing_tenant_with_an_any_tenant_key_is_a_422(client: httpx.AsyncClient) -> None:
    body = message("x")
    del body["tenant_id"]
    response = await client.post("/v1/messages", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "tenant_required"


async def test_read_back_a_message(client: httpx.AsyncClient, tenant: str) -> None:
    created = (await client.post("/v1/messages", json=message(tenant))).json()
    response = await client.get(f"/v1/messages/{created['message_id']}", params={"tenant_id": tenant})
    assert response.status_code == 200
    assert response.json() == created


async def test_reading_a_message_of_another_tenant_is_not_found(
    client: httpx.AsyncClient, tenant: str
) -> None:
    created = (await client.post("/v1/messages", json=message(tenant))).json()
    elsewhere = await client.get(
        f"/v1/messages/{created['message_id']}", params={"tenant_id": f"{tenant}-b"}
    )
    missing = await client.get(f"/v1/messages/{uuid.uuid4()}", params={"tenant_id": tenant})
    malformed = await client.get("/v1/messages/not-a-uuid", params={"tenant_id": tenant})
    assert elsewhere.status_code == 404
    assert elsewhere.json()["error"] == "message_not_found"
    assert missing.status_code == 404
    assert malformed.status_code == 422


async def test_replay_must_match_metadata_and_user_too(
    client: httpx.AsyncClient, tenant: str
) -> None:
    await client.post("/v1/messages", json=message(tenant, client_message_id="m", metadata={"a": 1}))
    changed = await client.post(
        "/v1/messages", json=message(tenant, client_message_id="m", metadata={"a": 2})
    )
    assert changed.status_code == 409


async def test_inline_embedding_failure_queues_the_message_instead_of_losing_it(
    client: AppClient, tenant: str, db_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memory_layer.embeddings.providers.base import EmbeddingError

    async def broken(texts: list[str]) -> list[list[float]]:
        raise EmbeddingError("model unavailable", kind="unavailable")

    async def broken_query(text: str) -> list[float]:
        raise EmbeddingError("model unavailable", kind="unavailable")

    monkeypatch.setattr(client.embedder, "embed_documents", broken)
    monkeypatch.setattr(client.embedder, "embed_query", broken_query)
    stored = await client.post("/v1/messages", json=message(tenant))
    assert stored.status_code == 202, stored.text
    body = stored.json()
    assert body["embedding_status"] == "pending"
    assert body["embedding_error"] == "unavailable: model unavailable"
    assert stored.headers["Location"] == f"/v1/messages/{body['message_id']}?tenant_id={tenant}"
    assert body["status_url"] == stored.headers["Location"]
    assert await count_rows(db_engine, tenant) == 1

    # Hybrid search falls back to the keyword index, finds the pending message, and says so.
    searched = await client.post(
        "/v1/memory/search", json={"tenant_id": tenant, "query": "python programming"}
    )
    assert searched.status_code == 200, searched.text
    assert searched.json()["mode"] == "keyword"
    assert searched.json()["degraded"] == "embedding_failed: model unavailable"
    assert [item["message_id"] for item in searched.json()["items"]] == [body["message_id"]]
    # A search that needs the vector cannot fall back: 503, nothing half-answered.
    vector_only = await client.post(
        "/v1/memory/search", json={"tenant_id": tenant, "query": "python", "mode": "vector"}
    )
    assert vector_only.status_code == 503
    assert vector_only.json()["error"] == "embedding_failed"
    assert "model unavailable" in vector_only.json()["detail"]
    errors = sample_value(
        await scrape(client),
        "memory_embedding_errors_total",
        {"kind": "unavailable", "provider": "fake-hash-384"},
    )
    assert errors == 3.0  # the stored message, the hybrid search, the vector search


async def test_concurrent_retries_store_exactly_one_message(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine
) -> None:
    import asyncio

    body = message(tenant, client_message_id="burst")
    responses = await asyncio.gather(*(client.post("/v1/messages", json=body) for _ in range(6)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["message_id"] for r in responses}) == 1
    assert [r.headers["Idempotent-Replayed"] for r in responses].count("false") == 1
    assert await count_rows(db_engine, tenant) == 1
