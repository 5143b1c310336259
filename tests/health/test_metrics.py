"""GET /metrics: request, ingestion and embedding metrics in the Prometheus text format."""

from __future__ import annotations

import httpx

from tests.support.metrics import sample_value, scrape


async def test_metrics_count_requests_by_route_template(
    client: httpx.AsyncClient, tenant: str
) -> None:
    created = await client.post(
        "/v1/messages",
        json={"tenant_id": tenant, "conversation_id": "c", "role": "user", "content": "hi there"},
    )
    await client.get(f"/v1/messages/{created.json()['message_id']}", params={"tenant_id": tenant})
    await client.get("/v1/memory/search", params={"tenant_id": tenant, "query": "hi"})
    body = await scrape(client)

    def requests(method: str, route: str) -> float | None:
        labels = {"method": method, "route": route, "status": "200"}
        return sample_value(body, "memory_http_requests_total", labels)

    assert requests("POST", "/v1/messages") == 1.0
    # The route template, not the path with the id in it: one series per route.
    assert requests("GET", "/v1/messages/{message_id}") == 1.0
    assert requests("GET", f"/v1/messages/{created.json()['message_id']}") is None
    search = {"method": "GET", "route": "/v1/memory/search"}
    assert sample_value(body, "memory_http_request_duration_seconds_count", search) == 1.0
    first_bucket = sample_value(body, "memory_http_request_duration_seconds_bucket", search | {"le": "0.005"})
    assert first_bucket is not None
    assert sample_value(body, "memory_messages_ingested_total", {"role": "user"}) == 1.0
    # One provider call for the stored message, one for the search query.
    assert sample_value(body, "memory_embedding_duration_seconds_count") == 2.0
