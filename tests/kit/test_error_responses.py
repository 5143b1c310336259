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


async def test_a_405_names_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    # GET and POST are two routes on one path: Allow names both, whichever method was refused.
    for response in (
        await client.options("/v1/memory/search"),
        await client.delete("/v1/memory/search"),
    ):
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, POST"
        assert response.json()["error"] == "method_not_allowed"


async def test_every_operation_documents_the_plumbing_statuses(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            assert {"413", "500", "503"} <= statuses, (method, path)
            if "requestBody" in operation:
                assert {"400", "422"} <= statuses, (method, path)
            for status in statuses - {"200", "201", "202", "204"}:
                schema = operation["responses"][status].get("content", {}).get(
                    "application/json", {}
                ).get("schema", {})
                assert "HTTPValidationError" not in str(schema), (method, path, status)
