"""Dependencies every domain's routes share, as Annotated aliases over app.state.

Dependencies that do no blocking work are `async def`: FastAPI runs a plain `def` dependency in
its thread pool, and a search resolved about a dozen of them, each a hop to a thread and back.
The hot routes' composite dependencies (the caller, the writer, the searcher) read app.state
through the plain accessors below instead of one sub-dependency each: every Depends node costs
FastAPI's resolver a cache-key computation and a recursion per request (docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from memory_layer.config import Settings
from memory_layer.kit.cache import SearchCache, TenantSizes
from memory_layer.kit.observability.logging import current_request_id
from memory_layer.kit.observability.metrics import Metrics
from memory_layer.kit.pagination import CursorCodec


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def metrics_of(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def tenant_sizes_of(request: Request) -> TenantSizes:
    sizes: TenantSizes = request.app.state.tenant_sizes
    return sizes


def search_cache_of(request: Request) -> SearchCache | None:
    # Built in the lifespan; None without Redis or with MEMORY_SEARCH_CACHE_TTL_SECONDS=0.
    cache: SearchCache | None = getattr(request.app.state, "search_cache", None)
    return cache


async def get_settings(request: Request) -> Settings:
    return settings_of(request)


async def get_metrics(request: Request) -> Metrics:
    return metrics_of(request)


async def get_cursor_codec(request: Request) -> CursorCodec:
    codec: CursorCodec = request.app.state.cursor_codec
    return codec


async def get_tenant_sizes(request: Request) -> TenantSizes:
    return tenant_sizes_of(request)


async def get_request_id() -> str | None:
    # X-Request-ID as the request-id middleware accepted or generated it.
    return current_request_id()


async def get_search_cache(request: Request) -> SearchCache | None:
    return search_cache_of(request)


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
CursorCodecDep = Annotated[CursorCodec, Depends(get_cursor_codec)]
TenantSizesDep = Annotated[TenantSizes, Depends(get_tenant_sizes)]
RequestIdDep = Annotated[str | None, Depends(get_request_id)]
SearchCacheDep = Annotated[SearchCache | None, Depends(get_search_cache)]
