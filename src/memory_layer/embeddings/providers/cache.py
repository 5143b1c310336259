"""An LRU of query vectors in front of any provider: a repeated query skips the model entirely.

Chatbots ask the same things again ("what is my name?"); keyed by (model, text), a hit costs a
dictionary look-up instead of a model call. Document embeddings are never cached.
"""

from __future__ import annotations

from cachetools import LRUCache

from memory_layer.embeddings.providers.base import EmbeddingProvider


class QueryCachingProvider:
    def __init__(self, inner: EmbeddingProvider, maxsize: int) -> None:
        self.inner = inner
        self._cache: LRUCache[tuple[str, str], list[float]] = LRUCache(maxsize=maxsize)
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
        cached = self._cache.get(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        vector = await self.inner.embed_query(text)
        self._cache[key] = vector
        return vector

    async def close(self) -> None:
        await self.inner.close()
