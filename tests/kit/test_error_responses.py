"""The one error body for routes and methods the app does not have."""

from __future__ import annotations

import httpx


async def test_unknown_route_and_method_use_the_error_body(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nothing-here")
    wrong_method = await client.delete("/v1/memory/search")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"
