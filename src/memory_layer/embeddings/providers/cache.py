"""Query vectors cached in front of any provider: a repeated query skips the model entirely.

Chatbots ask the same things again ("what is my name?"). The first level is an LRU in the process,
keyed by (model, text): a hit costs a dictionary look-up. The second, with MEMORY_REDIS_URL, is
shared by every replica in Redis (kit/cache.QueryVectorCache, keyed by model, dimension and the
text's hash): a query one replica embedded costs the others a Redis round trip. Document
embeddings are never cached.
"""

from __future__ import annotations

from cachetools import LRUCache

from memory_layer.embeddings.providers.base import EmbeddingProvider
from memory_layer.kit.cache import QueryVectorCache


class QueryCachingProvider:
    def __init__(
        self, inner: EmbeddingProvider, maxsize: int, shared: QueryVectorCache | None = None
    ) -> None:
        self.inner = inner
        self._cache: LRUCache[tuple[str, str], list[float]] | None = (
            LRUCache(maxsize=maxsize) if maxsize > 0 else None
        )
        self.shared = shared
        self.hits = 0
        self.misses = 0

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def dimensions(self) -> int:
        return self.inner.dimensions

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self.inner.embed_documents(texts)

    async def embed_query(self, text: str) -> list[float]:
        key = (self.inner.model_name, text)
        cached = self._cache.get(key) if self._cache is not None else None
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        vector = await self._shared_or_model(text)
        if self._cache is not None:
            self._cache[key] = vector
        return vector

    async def _shared_or_model(self, text: str) -> list[float]:
        if self.shared is None:
            return await self.inner.embed_query(text)
        model, dimensions = self.inner.model_name, self.inner.dimensions
        vector = await self.shared.get(model, dimensions, text)
        if vector is None:
            vector = await self.inner.embed_query(text)
            await self.shared.put(model, dimensions, text, vector)
        return vector

    async def close(self) -> None:
        await self.inner.close()
