"""The request body-size limit: 413 before validation, for sized and chunked bodies alike."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from tests.fixtures.app import ADMIN_KEY, running_client
from tests.fixtures.messages import count_rows, message_body


def message(tenant: str, **overrides: Any) -> dict[str, Any]:
    overrides.setdefault('content', 'hello')
    return message_body(tenant, **overrides)


async def test_oversized_body_is_a_413_before_validation(
    settings_factory: Callable[..., Settings], tenant: str, db_engine: AsyncEngine
) -> None:
    settings = settings_factory(max_content_chars=100, max_metadata_bytes=1024)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        response = await client.post(
            "/v1/messages", json=message(tenant, content="x" * (settings.max_body_bytes + 1))
        )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert await count_rows(db_engine, tenant) == 0


async def test_oversized_chunked_body_is_a_413_too(
    settings_factory: Callable[..., Settings], tenant: str, db_engine: AsyncEngine
) -> None:
    import json

    settings = settings_factory(max_content_chars=100, max_metadata_bytes=1024)
    payload = json.dumps(message(tenant, content="x" * (settings.max_body_bytes + 1))).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 8192):
            yield payload[start : start + 8192]

    async def small() -> AsyncIterator[bytes]:
        yield json.dumps(message(tenant, content="chunked")).encode()

    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        response = await client.post(
            "/v1/messages", content=chunks(), headers={"content-type": "application/json"}
        )
        accepted = await client.post(
            "/v1/messages", content=small(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert accepted.status_code == 200
    assert accepted.json()["content"] == "chunked"
    assert await count_rows(db_engine, tenant) == 1
