"""SQL of named locks: grant, release and extend are one statement each."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.kit.db.wakeups import CHANNEL

# A grant: a new row (fencing number 1), or the existing row when it is free (released, or its
# lease has ended). ON CONFLICT DO UPDATE locks the row and evaluates the WHERE on its newest
# version, so of two concurrent acquirers exactly one updates it and the other gets no row; the
# fencing number grows in the very statement that grants. clock_timestamp(): the database's clock,
# the one every replica shares. When nothing is granted, the same statement answers the seconds
# left of the current lease (read from the statement's snapshot: the holder's row as it was), so
# a failed attempt is one round trip, and its transaction (which holds the row lock ON CONFLICT
# takes even when the WHERE fails) ends at once.
ACQUIRE_SQL = """
WITH granted AS (
    INSERT INTO locks AS l (tenant_id, name, token, fencing_token, acquired_at, expires_at)
    VALUES (:tenant_id, :name, :token, 1, clock_timestamp(),
            clock_timestamp() + make_interval(secs => :ttl))
    ON CONFLICT (tenant_id, name) DO UPDATE
    SET token = EXCLUDED.token,
        fencing_token = l.fencing_token + 1,
        acquired_at = EXCLUDED.acquired_at,
        expires_at = EXCLUDED.expires_at
    WHERE l.token IS NULL OR l.expires_at <= clock_timestamp()
    RETURNING fencing_token, acquired_at, expires_at
)
SELECT fencing_token, acquired_at, expires_at, NULL::float8 AS lease_left FROM granted
UNION ALL
SELECT NULL, NULL, NULL, greatest(extract(epoch FROM expires_at - clock_timestamp()), 0)::float8
FROM locks
WHERE tenant_id = :tenant_id AND name = :name AND NOT EXISTS (SELECT FROM granted)
"""

# A release frees the row and wakes the waiters of every process (NOTIFY is sent at commit).
# Only the current, unexpired grant's token matches: a stale or wrong one changes nothing.
RELEASE_SQL = """
WITH released AS (
    UPDATE locks SET token = NULL, expires_at = clock_timestamp()
    WHERE tenant_id = :tenant_id AND name = :name AND token = :token
      AND expires_at > clock_timestamp()
    RETURNING fencing_token
)
SELECT fencing_token, pg_notify(:channel, :key) FROM released
"""

EXTEND_SQL = """
UPDATE locks SET expires_at = clock_timestamp() + make_interval(secs => :ttl)
WHERE tenant_id = :tenant_id AND name = :name AND token = :token
  AND expires_at > clock_timestamp()
RETURNING fencing_token, acquired_at, expires_at
"""

HELD_SQL = "SELECT count(*) FROM locks WHERE token IS NOT NULL AND expires_at > clock_timestamp()"


@dataclass(frozen=True)
class GrantRow:
    fencing_token: int
    acquired_at: datetime
    expires_at: datetime


class LockRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def try_acquire(
        self, tenant_id: str, name: str, token: uuid.UUID, ttl_seconds: float
    ) -> GrantRow | float:
        """The grant, or the seconds left of the lease that holds the lock (0 when it has just
        been freed: try again)."""
        row = (
            await self.session.execute(
                text(ACQUIRE_SQL),
                {"tenant_id": tenant_id, "name": name, "token": token, "ttl": ttl_seconds},
            )
        ).one_or_none()
        if row is None:
            return 0.0
        if row.fencing_token is None:
            return float(row.lease_left)
        return GrantRow(int(row.fencing_token), row.acquired_at, row.expires_at)

    async def release(self, tenant_id: str, name: str, token: uuid.UUID, key: str) -> bool:
        row = (
            await self.session.execute(
                text(RELEASE_SQL),
                {"tenant_id": tenant_id, "name": name, "token": token, "channel": CHANNEL,
                 "key": key},
            )
        ).one_or_none()
        return row is not None

    async def extend(
        self, tenant_id: str, name: str, token: uuid.UUID, ttl_seconds: float
    ) -> GrantRow | None:
        row = (
            await self.session.execute(
                text(EXTEND_SQL),
                {"tenant_id": tenant_id, "name": name, "token": token, "ttl": ttl_seconds},
            )
        ).one_or_none()
        if row is None:
            return None
        return GrantRow(int(row.fencing_token), row.acquired_at, row.expires_at)

    async def count_held(self) -> int:
        return int((await self.session.execute(text(HELD_SQL))).scalar_one())
