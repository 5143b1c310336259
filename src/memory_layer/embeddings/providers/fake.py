"""A deterministic provider for fast tests: hashed word and character-trigram features.

Texts that share words land close together, so nearest-neighbour tests stay meaningful, and the
same text always gives the same vector. It knows nothing of meaning: paraphrase tests use the real
local model.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re

_WORD = re.compile(r"\w+", re.UNICODE)


class FakeEmbeddingProvider:
    def __init__(self, dimensions: int = 384, *, delay_seconds: float = 0.0) -> None:
        self._dimensions = dimensions
        # Simulated provider latency per call (MEMORY_FAKE_EMBEDDING_DELAY_MS).
        self._delay_seconds = delay_seconds

    @property
    def model_name(self) -> str:
        return f"fake-hash-{self._dimensions}"

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def _features(self, text: str) -> list[tuple[str, float]]:
        words = [w.lower() for w in _WORD.findall(text)]
        features: list[tuple[str, float]] = [(f"w:{w}", 1.0) for w in words]
        for word in words:
            padded = f"#{word}#"
            features.extend((f"c:{padded[i:i + 3]}", 0.25) for i in range(len(padded) - 2))
        return features or [("empty", 1.0)]

    def embed_sync(self, text: str) -> list[float]:
        vector = [0.0] * self._dimensions
        for feature, weight in self._features(text):
            digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self._dimensions
            sign = 1.0 if digest[4] & 1 else -1.0
            vector[index] += sign * weight
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if self._delay_seconds:
            await asyncio.sleep(self._delay_seconds)
        return [self.embed_sync(text) for text in texts]

    async def embed_query(self, text: str) -> list[float]:
        return self.embed_sync(text)

    async def close(self) -> None:
        return None
