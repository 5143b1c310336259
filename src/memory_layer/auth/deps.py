"""Request dependencies of authentication: PrincipalDep, AdminDep and CallerDep."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.auth.service import KeyRing, Principal, authenticate, require_admin, resolve_tenant
from memory_layer.kit.db.session import ReadSessionmakerDep, SessionDep
from memory_layer.kit.http.deps import SettingsDep

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


async def get_key_ring(request: Request) -> KeyRing:
    key_ring: KeyRing = request.app.state.key_ring
    return key_ring


async def get_principal(
    sessionmaker: ReadSessionmakerDep,
    settings: SettingsDep,
    key_ring: Annotated[KeyRing, Depends(get_key_ring)],
    api_key: Annotated[str | None, Security(api_key_header)],
) -> Principal:
    # A read session of its own (autocommit: one round trip), closed before the route runs: the
    # key look-up never keeps a connection (or a transaction) open while the route embeds a text.
    async with sessionmaker() as session:
        return await authenticate(session, settings, key_ring, api_key)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_admin(principal: PrincipalDep) -> Principal:
    require_admin(principal)
    return principal


AdminDep = Annotated[Principal, Depends(get_admin)]


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
