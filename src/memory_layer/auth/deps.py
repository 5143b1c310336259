"""Request dependencies of authentication: PrincipalDep, the scope checks, AdminDep and CallerDep.

Every route declares the scope it needs, in its `dependencies` (READ, WRITE) or through AdminDep
(admin); tests/test_architecture.py fails for a route that declares none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.auth.service import KeyRing, Principal, authenticate, require_scope, resolve_tenant
from memory_layer.kit.db.session import ReadSessionDep, SessionDep, read_sessionmaker_of
from memory_layer.kit.http.deps import settings_of
from memory_layer.kit.observability.logging import record_tenant
from memory_layer.models.api_key import KeyScope

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def key_ring_of(request: Request) -> KeyRing:
    key_ring: KeyRing = request.app.state.key_ring
    return key_ring


async def get_principal(
    request: Request, api_key: Annotated[str | None, Security(api_key_header)]
) -> Principal:
    # Read sessions of its own, opened only if the key must be looked up and closed before the
    # route runs: the look-up never keeps a connection open while the route embeds a text.
    principal = await authenticate(
        read_sessionmaker_of(request), settings_of(request), key_ring_of(request), api_key
    )
    # The access line names the key's tenant (none for keys that may act for any tenant).
    record_tenant(request.state, principal.tenant_id)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


class RequireScope:
    """A dependency that lets the request through only when its key holds `scope` (else 403
    `insufficient_scope`, naming it); it answers the principal."""

    def __init__(self, scope: KeyScope) -> None:
        self.scope = scope

    async def __call__(self, principal: PrincipalDep) -> Principal:
        require_scope(principal, self.scope)
        return principal


require_read = RequireScope(KeyScope.read)
require_write = RequireScope(KeyScope.write)
require_admin = RequireScope(KeyScope.admin)
# For a route's `dependencies=[...]`: searches, listings and reads need READ; storing, editing,
# deleting and importing need WRITE.
READ = Depends(require_read)
WRITE = Depends(require_write)
AdminDep = Annotated[Principal, Depends(require_admin)]


@dataclass(frozen=True)
class Caller:
    """A tenant route's starting point: the API key that called and the request's session."""

    principal: Principal
    session: AsyncSession

    def tenant(self, requested: str | None) -> str:
        """The tenant the request acts for: the key's own, or `requested` if the key may name one."""
        return resolve_tenant(self.principal, requested)


async def get_caller(principal: PrincipalDep, session: SessionDep) -> Caller:
    return Caller(principal, session)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def get_read_caller(principal: PrincipalDep, session: ReadSessionDep) -> Caller:
    return Caller(principal, session)


# A tenant route that only reads: its session may be on a read replica (kit/db/replicas.py).
ReadCallerDep = Annotated[Caller, Depends(get_read_caller)]
