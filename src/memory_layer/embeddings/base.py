"""The protocol every embedding provider implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class EmbeddingError(RuntimeError):
    """The provider could not produce vectors (model missing, remote error, bad answer)."""


@runtime_checkable
class EmbeddingProvider(Protocol):
    """Turns texts into unit-length vectors of `dimensions` floats."""

    @property
    def model_name(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Vectors for stored messages, in input order."""
        ...

    async def embed_query(self, text: str) -> list[float]:
        """The vector for one search query."""
        ...

    async def close(self) -> None: ...
