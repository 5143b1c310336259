"""Named locks: a lease (`ttl_seconds`), an optional wait, and a fencing number per grant.

Storage is PostgreSQL (the `locks` table): every API replica already shares it, a grant is one
statement, and no Redis is involved, so losing Redis loses no lock (docs/architecture.md, "Locks",
says why and what was measured). Waiting does not poll: a waiter sleeps until a release wakes it
(LISTEN/NOTIFY through `kit/db/wakeups.py`), the holder's lease ends, or its own wait ends, and
then tries once more. Each attempt is a short transaction of its own, so no connection is held
while a request waits.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from memory_layer.kit.db.wakeups import Wakeups
from memory_layer.kit.errors import Conflict, DomainError
from memory_layer.locks.repository import GrantRow, LockRepository

# A waiter wakes this long after the holder's lease should have ended, so its next attempt finds
# the lease over (the database's clock decides, a little later than the sleep's).
LEASE_END_MARGIN_SECONDS = 0.01


class LockHeld(DomainError):
    """The lock is held by someone else and the wait (if any) ended first: 423, as WebDAV."""

    status_code = 423
    code = "locked"


class LockNotHeld(Conflict):
    """The token is not the current grant's (wrong, released, or its lease has ended)."""

    code = "lock_not_held"


@dataclass(frozen=True)
class Grant:
    name: str
    token: uuid.UUID
    fencing_token: int
    acquired_at: datetime
    expires_at: datetime


def wakeup_key(tenant_id: str, name: str) -> str:
    """The NOTIFY payload a release of this lock sends."""
    return f"lock\x1f{tenant_id}\x1f{name}"


_TOKEN = re.compile(r"^<?(?:urn:uuid:)?([0-9A-Fa-f-]{32,36})>?$")


def parse_token(header: str) -> uuid.UUID | None:
    """The token of a `Lock-Token` header: `<urn:uuid:...>` as WebDAV writes it, or the bare
    token; None when it is no token at all (it then matches no grant)."""
    match = _TOKEN.match(header.strip())
    if match is None:
        return None
    try:
        return uuid.UUID(match.group(1))
    except ValueError:
        return None


async def acquire(
    sessionmaker: async_sessionmaker[AsyncSession],
    wakeups: Wakeups,
    tenant_id: str,
    name: str,
    *,
    ttl_seconds: float,
    wait_seconds: float = 0.0,
) -> Grant:
    """Grant the lock for `ttl_seconds`, waiting up to `wait_seconds` for it (423 `locked` when
    it is still held then)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    token = uuid.uuid4()
    # Registered before the first attempt: a release between an attempt and the sleep still wakes.
    with wakeups.waiter(wakeup_key(tenant_id, name)) as woken:
        while True:
            async with sessionmaker.begin() as session:
                row = await LockRepository(session).try_acquire(tenant_id, name, token, ttl_seconds)
            if isinstance(row, GrantRow):
                return Grant(name, token, row.fencing_token, row.acquired_at, row.expires_at)
            lease_left = row
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise LockHeld(
                    f"lock {name!r} is held by another holder for {lease_left:.3f} s more"
                )
            await wakeups.sleep(woken, min(remaining, lease_left + LEASE_END_MARGIN_SECONDS))


async def release(session: AsyncSession, tenant_id: str, name: str, token: uuid.UUID | None) -> None:
    """Release the grant holding `token` (409 `lock_not_held` otherwise: nothing changes); the
    waiters of every replica are woken at commit."""
    if token is None or not await LockRepository(session).release(
        tenant_id, name, token, wakeup_key(tenant_id, name)
    ):
        raise _not_held(name)


async def extend(
    session: AsyncSession, tenant_id: str, name: str, token: uuid.UUID | None, *, ttl_seconds: float
) -> Grant:
    """Make the grant holding `token` last `ttl_seconds` from now (same fencing number); 409
    `lock_not_held` when the token is not the current grant's."""
    row = (
        None
        if token is None
        else await LockRepository(session).extend(tenant_id, name, token, ttl_seconds)
    )
    if row is None or token is None:
        raise _not_held(name)
    return Grant(name, token, row.fencing_token, row.acquired_at, row.expires_at)


def _not_held(name: str) -> LockNotHeld:
    return LockNotHeld(
        f"this token does not hold lock {name!r} (wrong, released, or its lease has ended); "
        "nothing changed"
    )


async def count_held_locks(session: AsyncSession) -> int:
    """Locks held now across the store (leases running), for the admin statistics."""
    return await LockRepository(session).count_held()
