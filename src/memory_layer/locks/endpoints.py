"""Lock routes: acquire (optionally waiting), extend and release a named lock of a tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, status

from memory_layer.auth.deps import WRITE, PrincipalDep
from memory_layer.auth.service import resolve_tenant
from memory_layer.kit.db.session import SessionDep, SessionmakerDep
from memory_layer.kit.db.wakeups import WakeupsDep
from memory_layer.kit.schemas import error_responses
from memory_layer.locks import service
from memory_layer.locks.schemas import (
    LOCK_NAME_PATTERN,
    LockAcquire,
    LockExtend,
    LockRead,
    LockScopeRequest,
)

router = APIRouter(prefix="/v1/locks", tags=["locks"])

LockName = Annotated[
    str, Path(pattern=LOCK_NAME_PATTERN, max_length=128, description="The lock's name.")
]
LockToken = Annotated[
    str,
    Header(
        alias="Lock-Token",
        description="The token the grant answered (`<urn:uuid:...>` as WebDAV writes it, or the "
        "bare token); a wrong or stale one changes nothing (409 `lock_not_held`).",
    ),
]


def _read(grant: service.Grant) -> LockRead:
    return LockRead(
        name=grant.name,
        token=str(grant.token),
        fencing_token=grant.fencing_token,
        acquired_at=grant.acquired_at,
        expires_at=grant.expires_at,
    )


@router.post(
    "/{name}",
    response_model=LockRead,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 403, 422, 423, 503),
    dependencies=[WRITE],
)
async def acquire_lock(
    name: LockName,
    body: LockAcquire,
    query: Annotated[LockScopeRequest, Query()],
    principal: PrincipalDep,
    sessionmaker: SessionmakerDep,
    wakeups: WakeupsDep,
) -> LockRead:
    """Acquire a named lock for `ttl_seconds`, waiting up to `wait_seconds` for it: 201 with the
    token and fencing number, 423 `locked` when it is still held when the wait ends."""
    grant = await service.acquire(
        sessionmaker,
        wakeups,
        resolve_tenant(principal, query.tenant_id),
        name,
        ttl_seconds=body.ttl_seconds,
        wait_seconds=body.wait_seconds,
    )
    return _read(grant)


@router.patch(
    "/{name}",
    response_model=LockRead,
    responses=error_responses(401, 403, 409, 422, 503),
    dependencies=[WRITE],
)
async def extend_lock(
    name: LockName,
    body: LockExtend,
    lock_token: LockToken,
    query: Annotated[LockScopeRequest, Query()],
    principal: PrincipalDep,
    session: SessionDep,
) -> LockRead:
    """Extend the lease of the grant named by `Lock-Token` to `ttl_seconds` from now."""
    grant = await service.extend(
        session,
        resolve_tenant(principal, query.tenant_id),
        name,
        service.parse_token(lock_token),
        ttl_seconds=body.ttl_seconds,
    )
    return _read(grant)


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403, 409, 422, 503),
    dependencies=[WRITE],
)
async def release_lock(
    name: LockName,
    lock_token: LockToken,
    query: Annotated[LockScopeRequest, Query()],
    principal: PrincipalDep,
    session: SessionDep,
) -> None:
    """Release the grant named by `Lock-Token`; waiting acquirers on every replica are woken."""
    await service.release(
        session, resolve_tenant(principal, query.tenant_id), name, service.parse_token(lock_token)
    )
