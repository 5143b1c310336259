"""The protocol every embedding provider implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class EmbeddingError(RuntimeError):
    """The provider could not produce vectors (model missing, remote error, bad answer).

    `kind` is a short label for metrics and logs (rate_limited, unavailable, timeout, auth,
    bad_response, invalid_input, model). `retryable` says whether trying the same texts again
    later can succeed: the worker backs off on retryable errors and, for the rest, embeds the
    texts of a failed batch one by one so one poison message cannot fail its neighbours.
    """

    def __init__(self, message: str, *, kind: str = "model", retryable: bool = True) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


# Errors a single text can cause: a call of many texts that fails with one of these is tried
# again text by text (the worker) or caller by caller (the batcher), so one text fails alone.
PER_TEXT_KINDS = frozenset({"invalid_input", "bad_response", "model"})


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
