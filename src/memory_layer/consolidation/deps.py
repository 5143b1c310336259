"""Request dependencies of consolidation: what distils (built in the lifespan)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from memory_layer.consolidation.service import Distillers
from memory_layer.embeddings.deps import embedder_of
from memory_layer.kit.http.deps import metrics_of, settings_of


async def get_distillers(request: Request) -> Distillers:
    return Distillers(
        provider=request.app.state.language_provider,
        embedder=embedder_of(request),
        settings=settings_of(request),
        metrics=metrics_of(request),
    )


DistillersDep = Annotated[Distillers, Depends(get_distillers)]
