"""The deterministic test embedder behaves like an embedder."""

from __future__ import annotations

import math

from memory_layer.embeddings.providers.fake import FakeEmbeddingProvider


async def test_vectors_are_deterministic_unit_length_and_sized() -> None:
    provider = FakeEmbeddingProvider(64)
    first, second = await provider.embed_documents(["hello world", "hello world"])
    assert first == second
    assert len(first) == 64
    assert math.isclose(sum(v * v for v in first), 1.0, rel_tol=1e-9)


async def test_shared_words_are_closer_than_unrelated_text() -> None:
    provider = FakeEmbeddingProvider(384)
    query = await provider.embed_query("python programming")
    near, far = await provider.embed_documents(["I love python programming", "the cat sat"])

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(query, near) > cosine(query, far) + 0.2
