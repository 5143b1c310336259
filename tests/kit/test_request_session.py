"""The request transaction (SessionDep): a commit that fails is an error response, never a 2xx."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.messages import count_rows, message_body


def message(tenant: str, **overrides: Any) -> dict[str, Any]:
    overrides.setdefault('content', 'hello')
    return message_body(tenant, **overrides)


async def test_a_failed_commit_is_an_error_response_not_a_2xx(
    client: httpx.AsyncClient, tenant: str, db_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.ext.asyncio import AsyncSession

    async def failing_commit(self: AsyncSession) -> None:
        raise OperationalError("COMMIT", {}, ConnectionError("connection lost"))

    monkeypatch.setattr(AsyncSession, "commit", failing_commit)
    response = await client.post("/v1/messages", json=message(tenant))
    monkeypatch.undo()
    assert response.status_code == 503
    assert response.json()["error"] == "database_unavailable"
    assert await count_rows(db_engine, tenant) == 0
