"""CORS from MEMORY_ALLOWED_ORIGINS: preflights answered for allowed origins only, headers exposed."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from memory_layer.config import Settings
from tests.fixtures.app import ADMIN_KEY, running_client

ORIGIN = "https://app.example"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
async def test_preflight_from_an_allowed_origin_is_answered(
    settings_factory: Callable[..., Settings], method: str
) -> None:
    settings = settings_factory(allowed_origins=f"{ORIGIN},https://other.example")
    async with running_client(settings) as client:
        response = await client.options(
            "/v1/messages",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "x-api-key, content-type, x-request-id",
            },
        )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert method in response.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"x-api-key", "content-type", "x-request-id"} <= allowed


async def test_preflight_from_another_origin_is_refused(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_client(settings_factory(allowed_origins=ORIGIN)) as client:
        response = await client.options(
            "/v1/messages",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_answers_expose_the_request_id_and_rate_limit_headers(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_client(settings_factory(allowed_origins=ORIGIN)) as client:
        response = await client.get(
            "/v1/admin/readiness",
            headers={"Origin": ORIGIN, "X-API-Key": ADMIN_KEY, "X-Request-ID": "cors-1"},
        )
        refused = await client.get("/v1/memory/search", params={"query": "q"},
                                   headers={"Origin": ORIGIN, "X-API-Key": "wrong"})
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["X-Request-ID"] == "cors-1"
    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {
        "x-request-id", "retry-after", "x-ratelimit-limit", "x-ratelimit-remaining",
        "x-ratelimit-reset", "idempotent-replayed", "location",
    } <= exposed
    # Error answers carry the CORS headers too, so a browser client can read them.
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == ORIGIN


async def test_without_allowed_origins_no_cors_headers_are_sent(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_client(settings_factory()) as client:
        response = await client.get("/v1/admin/health", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in response.headers
