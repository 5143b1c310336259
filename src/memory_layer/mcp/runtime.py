"""What every tool call works with: the clients the application built, and who is calling."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import State
from starlette.requests import Request

from memory_layer.auth.service import Principal, require_scope, resolve_tenant
from memory_layer.config import Settings
from memory_layer.consolidation.providers.base import LanguageProvider
from memory_layer.consolidation.service import Distillers
from memory_layer.embeddings.providers.base import EmbeddingProvider
from memory_layer.kit.cache import SearchCache, TenantSizes
from memory_layer.kit.db.session import unit_of_work
from memory_layer.kit.errors import Unauthenticated
from memory_layer.kit.observability.logging import current_request_id
from memory_layer.kit.observability.metrics import Metrics
from memory_layer.kit.pagination import CursorCodec
from memory_layer.models.api_key import KeyScope
from memory_layer.policies.deps import policies_of
from memory_layer.policies.service import EffectivePolicy, RequestPolicies

# What the MCP server enters once to get its runtime (mcp.server.build_server's argument).
RuntimeLifespan = Callable[[Any], AbstractAsyncContextManager["Runtime"]]
# Where the /mcp endpoint leaves the principal of the request's API key (request.state).
PRINCIPAL = "mcp_principal"


@dataclass(frozen=True)
class Runtime:
    """The application's clients (read from app.state, as the routes' dependencies read them).

    `principal` is the fixed caller of a stdio server; over HTTP it is None and every call is
    made by the API key of its own request.
    """

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    read_sessionmaker: async_sessionmaker[AsyncSession]
    embedder: EmbeddingProvider
    metrics: Metrics
    cursors: CursorCodec
    tenant_sizes: TenantSizes
    search_cache: SearchCache | None
    language_provider: LanguageProvider
    principal: Principal | None = None

    @classmethod
    def of_app(cls, state: State, principal: Principal | None = None) -> Runtime:
        """The clients a started application keeps on its state."""
        return cls(
            settings=state.settings,
            sessionmaker=state.sessionmaker,
            read_sessionmaker=state.read_sessionmaker,
            embedder=state.embedder,
            metrics=state.metrics,
            cursors=state.cursor_codec,
            tenant_sizes=state.tenant_sizes,
            search_cache=getattr(state, "search_cache", None),
            language_provider=state.language_provider,
            principal=principal,
        )

    def call(self, request: Any, scope: KeyScope) -> Call:
        """A tool call by the request's API key (HTTP) or the server's caller (stdio), once the
        key is known to hold `scope` (else 403 insufficient_scope)."""
        http = request if isinstance(request, Request) else None
        principal = self.principal
        if http is not None:
            principal = getattr(http.state, PRINCIPAL, None)
        if principal is None:
            raise Unauthenticated("send an API key in the X-API-Key header", code="missing_api_key")
        require_scope(principal, scope)
        return Call(self, principal, http)


@dataclass(frozen=True)
class Call:
    """One tool call: the runtime, the caller's key and, over HTTP, its request."""

    runtime: Runtime
    principal: Principal
    request: Request | None

    def tenant(self, requested: str | None) -> str:
        """The tenant the call acts for: the key's own, or `requested` if the key may name one."""
        return resolve_tenant(self.principal, requested)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """The call's unit of work, committed before its answer (as a route's session)."""
        async with unit_of_work(self.runtime.sessionmaker) as session:
            yield session

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A session for a call that only reads (no transaction)."""
        async with self.runtime.read_sessionmaker() as session:
            yield session

    async def policy(self, tenant_id: str) -> EffectivePolicy:
        """The tenant's policy; over HTTP the read the tenant rate limit made for this request."""
        policies = (
            policies_of(self.request)
            if self.request is not None
            else RequestPolicies(self.runtime.read_sessionmaker, self.runtime.settings)
        )
        return await policies.get(tenant_id)

    def distillers(self) -> Distillers:
        """What consolidation calls (as the summarize route's dependency builds it)."""
        runtime = self.runtime
        return Distillers(runtime.language_provider, runtime.embedder, runtime.settings,
                          runtime.metrics)

    @property
    def request_id(self) -> str | None:
        return current_request_id()


def app_runtime(state: State) -> RuntimeLifespan:
    """The lifespan of the HTTP server: the clients of the started application on `state`."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[Runtime]:
        yield Runtime.of_app(state)

    return lifespan
