"""Health and readiness: the database, the migrations, and optionally the embedder and Redis."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import httpx
import pytest

from memory_layer.config import Settings
from tests.fixtures.app import running_client


async def test_health_pings_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/admin/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": {"ok": True, "detail": None}}


async def test_readiness_checks_migrations_and_optionally_the_embedder(
    client: httpx.AsyncClient, settings_factory: Callable[..., Settings]
) -> None:
    plain = await client.get("/v1/admin/readiness")
    assert plain.status_code == 200
    checks = plain.json()["checks"]
    assert checks["migrations"]["ok"] is True
    assert checks["migrations"]["detail"]["current"] == checks["migrations"]["detail"]["head"]
    assert "embedder" not in checks
    async with running_client(settings_factory(health_embed_check_enabled=True)) as with_embed:
        response = await with_embed.get("/v1/admin/readiness")
    assert response.status_code == 200
    assert response.json()["checks"]["embedder"] == {
        "ok": True, "detail": {"model": "fake-hash-384", "dimensions": 384}
    }


async def test_readiness_fails_when_the_embedder_hangs(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_factory(health_embed_check_enabled=True,
                                readiness_embed_timeout_seconds=0.05)
    async with running_client(settings) as client:
        async def hang(text: str) -> list[float]:
            await asyncio.sleep(5)  # a model call that hangs: the readiness timeout is 0.05 s
            return []

        monkeypatch.setattr(client.embedder, "embed_query", hang)
        response = await client.get("/v1/admin/readiness")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["embedder"]["ok"] is False
    assert "0.05" in body["checks"]["embedder"]["detail"]


async def test_readiness_pings_a_configured_redis(
    settings_factory: Callable[..., Settings],
) -> None:
    redis_url = os.environ.get("MEMORY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    async with running_client(settings_factory(redis_url=redis_url)) as client:
        up = await client.get("/v1/admin/readiness")
    assert up.status_code == 200, up.text
    assert up.json()["checks"]["redis"] == {"ok": True, "detail": None}

    async with running_client(settings_factory(redis_url="redis://127.0.0.1:1/0")) as client:
        down = await client.get("/v1/admin/readiness")
    assert down.status_code == 503
    assert down.json()["checks"]["redis"]["ok"] is False
