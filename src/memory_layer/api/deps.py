"""Request dependencies as Annotated aliases; clients come from app.state (built in the lifespan)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.config import Settings
from memory_layer.embeddings.base import EmbeddingProvider
from memory_layer.observability.metrics import Metrics
from memory_layer.services.auth import Principal, authenticate, require_admin

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_embedder(request: Request) -> EmbeddingProvider:
    embedder: EmbeddingProvider = request.app.state.embedder
    return embedder


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the handler succeeds, else rolled back.

    Used with scope="function", so the commit happens before the response is sent: a 2xx means
    the data is committed, and a failed commit becomes an error response, not a lost write.
    """
    async with request.app.state.sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


SettingsDep = Annotated[Settings, Depends(get_settings)]
EmbedderDep = Annotated[EmbeddingProvider, Depends(get_embedder)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    api_key: Annotated[str | None, Security(api_key_header)],
) -> Principal:
    return await authenticate(session, settings, request.app.state.key_ring, api_key)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_admin(principal: PrincipalDep) -> Principal:
    require_admin(principal)
    return principal


AdminDep = Annotated[Principal, Depends(get_admin)]
