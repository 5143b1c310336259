"""Stats: how much a tenant stores, and of which kind, computed in one SQL statement."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.pool import Pool, QueuePool

from memory_layer.events import service as events
from memory_layer.locks import service as locks
from memory_layer.runs import service as runs
from memory_layer.stats.repository import StatsRepository, database_bytes, store_message_counts


@dataclass(frozen=True)
class TenantStats:
    """Counts over every stored message in scope, archived ones included."""

    tenant_id: str
    user_id: str | None
    conversation_id: str | None
    messages: int
    archived: int
    by_role: dict[str, int]
    by_kind: dict[str, int]
    by_embedding_status: dict[str, int]
    conversations: int
    users: int
    content_bytes: int
    oldest_message_at: datetime | None
    newest_message_at: datetime | None


async def get_stats(
    session: AsyncSession,
    tenant_id: str,
    *,
    user_id: str | None = None,
    conversation_id: str | None = None,
    channel: str | None = None,
) -> TenantStats:
    """Counts of the tenant's messages, or of one user's, one conversation's or one channel's."""
    row = await StatsRepository(session).counts(
        tenant_id, user_id=user_id, conversation_id=conversation_id, channel=channel
    )
    return TenantStats(
        tenant_id=tenant_id,
        user_id=user_id,
        conversation_id=conversation_id,
        messages=row.messages,
        archived=row.archived,
        by_role=row.by_value["role"],
        by_kind=row.by_value["kind"],
        by_embedding_status=row.by_value["embedding_status"],
        conversations=row.conversations,
        users=row.users,
        content_bytes=row.content_bytes,
        oldest_message_at=row.oldest_message_at,
        newest_message_at=row.newest_message_at,
    )


# The whole store (GET /v1/admin/stats).
#
# Each domain with a table of its own contributes one counter: a (name, function) pair whose
# function counts across every tenant in the request's session and answers named totals, merged
# into `totals`. A domain adds its pair to STORE_COUNTERS (the names of totals must not repeat).
StoreCounter = Callable[[AsyncSession], Awaitable[Mapping[str, int]]]


async def events_total(session: AsyncSession) -> dict[str, int]:
    """Events appended to conversations' streams, across every tenant (`events`)."""
    return {"events": await events.count_events(session)}


async def locks_total(session: AsyncSession) -> dict[str, int]:
    """Named locks held now (lease not over), across every tenant (`locks_held`)."""
    return {"locks_held": await locks.count_held_locks(session)}


STORE_COUNTERS: tuple[tuple[str, StoreCounter], ...] = (
    ("messages", store_message_counts),
    ("runs", runs.count_runs),
    ("events", events_total),
    ("locks", locks_total),
)


class RedisInfo(Protocol):
    """What the stats read of a Redis client (redis.asyncio.Redis)."""

    async def info(self, section: str | None = None, *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class PoolStats:
    size: int  # connections kept open (MEMORY_DB_POOL_SIZE)
    max_connections: int  # with overflow
    in_use: int
    idle: int


@dataclass(frozen=True)
class RedisMemory:
    used_memory_bytes: int
    used_memory_peak_bytes: int
    maxmemory_bytes: int  # 0: no limit


@dataclass(frozen=True)
class StoreStats:
    """The whole store at a glance: totals across tenants, this process's pool, Redis memory."""

    totals: dict[str, int]
    database_bytes: int
    pool: PoolStats | None
    redis: RedisMemory | None
    redis_error: str | None


def pool_stats(pool: Pool, max_connections: int) -> PoolStats | None:
    """This process's pool (None for a pool that keeps no connections)."""
    if not isinstance(pool, QueuePool):
        return None
    return PoolStats(
        size=pool.size(), max_connections=max_connections,
        in_use=pool.checkedout(), idle=pool.checkedin(),
    )


async def redis_memory(redis: RedisInfo) -> RedisMemory:
    """Redis's INFO memory: used, peak and the maxmemory limit."""
    info = await redis.info("memory")
    return RedisMemory(
        used_memory_bytes=int(info.get("used_memory", 0)),
        used_memory_peak_bytes=int(info.get("used_memory_peak", 0)),
        maxmemory_bytes=int(info.get("maxmemory", 0)),
    )


async def store_stats(
    session: AsyncSession,
    *,
    pool: PoolStats | None,
    redis: RedisInfo | None,
    counters: tuple[tuple[str, StoreCounter], ...] = STORE_COUNTERS,
) -> StoreStats:
    """Every counter's totals (one after the other, in the session), the database size, the pool
    given and Redis's memory when a client is given (an unreachable Redis is reported, not
    raised)."""
    totals: dict[str, int] = {}
    for _name, count in counters:
        totals.update(await count(session))
    memory: RedisMemory | None = None
    error: str | None = None
    if redis is not None:
        try:
            memory = await redis_memory(redis)
        except Exception as exc:  # any Redis failure is what the admin must see
            error = f"{type(exc).__name__}: {exc}"
    return StoreStats(
        totals=totals,
        database_bytes=await database_bytes(session),
        pool=pool,
        redis=memory,
        redis_error=error,
    )
