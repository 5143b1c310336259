"""Request dependency of the embedding provider built in the lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from memory_layer.embeddings.providers.base import EmbeddingProvider


def embedder_of(request: Request) -> EmbeddingProvider:
    embedder: EmbeddingProvider = request.app.state.embedder
    return embedder


async def get_embedder(request: Request) -> EmbeddingProvider:
    return embedder_of(request)


EmbedderDep = Annotated[EmbeddingProvider, Depends(get_embedder)]
