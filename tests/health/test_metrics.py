"""GET /metrics: request, ingestion and embedding metrics in the Prometheus text format."""

from __future__ import annotations

import httpx


async def test_metrics_count_requests_by_route_template(
    client: httpx.AsyncClient, tenant: str
) -> None:
    created = await client.post(
        "/v1/messages",
        json={"tenant_id": tenant, "conversation_id": "c", "role": "user", "content": "hi there"},
    )
    await client.get(f"/v1/messages/{created.json()['message_id']}", params={"tenant_id": tenant})
    await client.get("/v1/memory/search", params={"tenant_id": tenant, "query": "hi"})
    body = (await client.get("/metrics")).text
    assert 'memory_http_requests_total{method="POST",route="/v1/messages",status="200"} 1.0' in body
    assert 'route="/v1/messages/{message_id}",status="200"' in body
    histogram = 'memory_http_request_duration_seconds_bucket{le="0.005",method="GET"'
    assert f'{histogram},route="/v1/memory/search"}}' in body
    assert 'memory_messages_ingested_total{role="user"} 1.0' in body
    assert "memory_embedding_duration_seconds_count" in body
