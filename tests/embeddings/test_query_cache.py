"""The query-vector LRU in front of a provider."""

from __future__ import annotations

from memory_layer.embeddings.providers.cache import QueryCachingProvider
from memory_layer.embeddings.providers.fake import FakeEmbeddingProvider


class CountingProvider(FakeEmbeddingProvider):
    def __init__(self) -> None:
        super().__init__(16)
        self.query_calls = 0
        self.document_calls = 0

    async def embed_query(self, text: str) -> list[float]:
        self.query_calls += 1
        return await super().embed_query(text)

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.document_calls += 1
        return await super().embed_documents(texts)


async def test_repeated_queries_hit_the_cache_and_documents_never_do() -> None:
    inner = CountingProvider()
    cached = QueryCachingProvider(inner, maxsize=2)
    first = await cached.embed_query("what is my name")
    again = await cached.embed_query("what is my name")
    assert first == again == await inner.embed_query("what is my name")
    assert (cached.hits, cached.misses) == (1, 1)
    await cached.embed_documents(["a"])
    await cached.embed_documents(["a"])
    assert inner.document_calls == 2


async def test_least_recently_used_query_is_evicted() -> None:
    inner = CountingProvider()
    cached = QueryCachingProvider(inner, maxsize=2)
    for text in ("a", "b", "a", "c", "a", "b"):
        await cached.embed_query(text)
    # a, b miss; a hits; c misses and evicts b; a hits; b misses again
    assert (cached.hits, cached.misses) == (2, 4)
    assert cached.model_name == inner.model_name
    assert cached.dimensions == 16
