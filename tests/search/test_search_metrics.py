"""Search metrics in /metrics: searches by mode, cached and degraded; results per search."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from memory_layer.config import Settings
from memory_layer.embeddings.providers.base import EmbeddingError
from tests.fixtures.app import ADMIN_KEY, running_client
from tests.fixtures.messages import remember
from tests.fixtures.tenants import new_tenant
from tests.support.metrics import sample_value, scrape
from tests.support.promtool import check_metrics


async def test_searches_are_counted_by_mode_cache_and_degradation(
    settings_factory: Callable[..., Settings], redis_url: str, redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = new_tenant()
    settings = settings_factory(redis_url=redis_url, redis_key_prefix=redis_prefix)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        await remember(client, tenant, "my parrot is called Rio")
        await remember(client, tenant, "the parrot eats seeds")
        search = {"tenant_id": tenant, "query": "parrot"}
        assert (await client.post("/v1/memory/search", json=search)).status_code == 200
        assert (await client.post("/v1/memory/search", json=search)).status_code == 200  # cached
        keyword = await client.get("/v1/memory/search", params=search | {"mode": "keyword"})
        assert len(keyword.json()["items"]) == 2
        none = await client.post("/v1/memory/search", json=search | {"query": "zebra", "mode": "keyword"})
        assert none.json()["items"] == []

        async def broken(text: str) -> list[float]:
            raise EmbeddingError("model unavailable", kind="unavailable")

        monkeypatch.setattr(client.embedder, "embed_query", broken)
        degraded = await client.post("/v1/memory/search", json=search | {"query": "seeds"})
        assert degraded.json()["degraded"] is not None
        exposition = await scrape(client)

    assert check_metrics(exposition) == ""

    def searches(mode: str, cached: str, degraded: str) -> float | None:
        labels = {"mode": mode, "cached": cached, "degraded": degraded}
        return sample_value(exposition, "memory_searches_total", labels)

    assert searches("hybrid", "false", "false") == 1
    assert searches("hybrid", "true", "false") == 1
    assert searches("keyword", "false", "false") == 2
    assert searches("keyword", "false", "true") == 1  # the hybrid search answered by keywords
    assert sample_value(
        exposition, "memory_search_degraded_total", {"reason": "embedding_failed"}
    ) == 1
    assert sample_value(exposition, "memory_search_results_count", {"mode": "hybrid"}) == 2
    assert sample_value(exposition, "memory_search_results_sum", {"mode": "hybrid"}) == 4
    # The empty keyword answer is in the lowest bucket.
    assert sample_value(
        exposition, "memory_search_results_bucket", {"mode": "keyword", "le": "0.0"}
    ) == 1
