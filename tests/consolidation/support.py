"""Helpers of the consolidation tests: turns through the API, and the worker over the app's state."""

from __future__ import annotations

from typing import Any

import httpx

from memory_layer.consolidation.providers.base import LanguageProvider
from memory_layer.consolidation.service import Distillers
from memory_layer.consolidation.worker import ConsolidationWorker
from tests.fixtures.app import AppClient


async def say(
    client: httpx.AsyncClient,
    tenant: str,
    content: str,
    *,
    user_id: str | None = "ana",
    conversation_id: str = "c1",
    role: str = "user",
    headers: dict[str, str] | None = None,
) -> str:
    body: dict[str, Any] = {"tenant_id": tenant, "conversation_id": conversation_id,
                            "role": role, "content": content}
    if user_id is not None:
        body["user_id"] = user_id
    response = await client.post("/v1/messages", json=body, headers=headers)
    assert response.status_code in (200, 202), response.text
    message_id: str = response.json()["message_id"]
    return message_id


def worker_of(client: AppClient, provider: LanguageProvider | None = None) -> ConsolidationWorker:
    """A consolidation worker over the app's sessionmaker, embedder and settings."""
    state = client.app.state
    return ConsolidationWorker(
        state.sessionmaker,
        Distillers(provider or state.language_provider, state.embedder, state.settings,
                   state.metrics),
    )


async def facts(
    client: httpx.AsyncClient, tenant: str, user_id: str = "ana", **params: Any
) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/users/{user_id}/facts", params={"tenant_id": tenant, **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items
