"""Reads on PostgreSQL hot standbys (MEMORY_DATABASE_REPLICA_URLS), writes on the primary.

Routes that only read take `ReadSessionDep` (kit/db/session.py); its session comes from
`ReplicaPool.route`, which picks a healthy replica, or the primary when none will do:

- without a consistency token, any healthy replica (round robin);
- with one (the `Memory-Consistency-Token` request header, a WAL position the service answered
  on an earlier write), a healthy replica that has replayed that far; none yet: the replicas are
  asked again every few milliseconds for up to MEMORY_REPLICA_WAIT_MS, then the primary serves
  the read. A client that sends back its last write's token always finds that write.

A replica is healthy while it answers, is in recovery, and replays within
MEMORY_REPLICA_MAX_LAG_SECONDS of the primary (checked every MEMORY_REPLICA_CHECK_INTERVAL_SECONDS).
A replica that fails during a read is marked down at once and the statement is run again on the
primary (reads run without a transaction, so nothing is half done); the next check that finds it
well puts it back in use.

Lag is measured against the primary's own WAL position, sampled at every check: a replica that
has replayed what the primary had written at time t is at most `now - t` behind. (The usual
`now() - pg_last_xact_replay_timestamp()` grows without bound on an idle primary.)
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from memory_layer.config import Settings
from memory_layer.kit.db.engine import PrimarySession, create_engine, create_read_sessionmaker
from memory_layer.kit.observability.metrics import Metrics

logger = logging.getLogger(__name__)

# Answered on every response of a request that committed on the primary; sent back by a client
# on a read that must see that commit.
CONSISTENCY_TOKEN_HEADER = "Memory-Consistency-Token"
# Answered on reads: which server ran them (`primary`, `replica-0`, ...).
READ_FROM_HEADER = "Memory-Read-From"
PRIMARY = "primary"

# Keys of a read session's `info`: the WAL position its data is known to include (absent: the
# primary, which has everything), the position the request asked for, and the routing.
READ_LSN = "read_lsn"
REQUIRED_LSN = "required_lsn"
_ROUTE = "replica_route"

_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")
# How often a read that waits for its token asks the replicas again.
_POLL_SECONDS = 0.003
_POLL_TIMEOUT_SECONDS = 0.1
_CHECK_TIMEOUT_SECONDS = 2.0
NOT_CHECKED = "not checked yet"


def parse_lsn(value: str) -> int | None:
    """A WAL position as PostgreSQL prints it (`16/B374D848`), as a byte offset; None if it is not one."""
    match = _LSN.fullmatch(value.strip())
    if match is None:
        return None
    return (int(match.group(1), 16) << 32) + int(match.group(2), 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def describe_url(url: str) -> str:
    """host:port/database, no user or password (for logs and readiness)."""
    parsed = make_url(url)
    host = parsed.host or parsed.query.get("host") or "localhost"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{host}{port}/{parsed.database or ''}"


# ---- which request committed on the primary (for the token on its response) ----


@dataclass
class RequestRouting:
    """What one request did with the databases, filled in while it runs."""

    committed: bool = False
    read_from: str | None = None


_current: contextvars.ContextVar[RequestRouting | None] = contextvars.ContextVar(
    "replica_request_routing", default=None
)


@event.listens_for(PrimarySession, "after_commit")
def _note_commit(session: Session) -> None:
    routing = _current.get()
    if routing is not None:
        routing.committed = True


# ---- replicas ----


@dataclass
class Replica:
    name: str
    description: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    healthy: bool = False
    replay_lsn: int = 0
    lag_seconds: float | None = None
    reason: str | None = NOT_CHECKED
    checked_at: float | None = None

    def detail(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "server": self.description,
            "healthy": self.healthy,
            "replay_lsn": format_lsn(self.replay_lsn) if self.replay_lsn else None,
            "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Route:
    """Where one read runs: a replica (and the WAL position it has replayed), or the primary."""

    replica: Replica | None
    read_lsn: int | None
    reason: str  # replica, or why the primary: no_healthy_replica, behind_token, invalid_token

    @property
    def target(self) -> str:
        return self.replica.name if self.replica is not None else PRIMARY


@dataclass
class ReplicaPool:
    """The replicas of one process, their health, and the choice of where a read runs."""

    primary_engine: AsyncEngine
    primary_reads: async_sessionmaker[AsyncSession]
    replicas: Sequence[Replica]
    metrics: Metrics
    max_lag_seconds: float
    wait_seconds: float
    check_interval_seconds: float
    # (monotonic time, the primary's WAL position then), newest last.
    _primary_history: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=512))
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    def healthy(self) -> list[Replica]:
        return [replica for replica in self.replicas if replica.healthy]

    def _next(self, candidates: Sequence[Replica]) -> Replica:
        return candidates[next(self._turn) % len(candidates)]

    async def route(self, token: int | None) -> Route:
        """Where a read that must see `token` (None: any recent state) runs."""
        if not self.replicas:
            return Route(None, None, "no_replicas")
        healthy = self.healthy()
        if not healthy:
            return self._fallback("no_healthy_replica")
        if token is None:
            replica = self._next(healthy)
            return Route(replica, replica.replay_lsn, "replica")
        ready = [replica for replica in healthy if replica.replay_lsn >= token]
        if ready:
            replica = self._next(ready)
            return Route(replica, replica.replay_lsn, "replica")
        deadline = time.monotonic() + self.wait_seconds
        while True:
            for replica in healthy:
                lsn = await self._replay_lsn(replica)
                if lsn is not None and lsn >= token:
                    return Route(replica, lsn, "replica")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._fallback("behind_token")
            await asyncio.sleep(min(_POLL_SECONDS, remaining))
            healthy = self.healthy()
            if not healthy:
                return self._fallback("no_healthy_replica")

    def route_to_primary(self, reason: str) -> Route:
        return self._fallback(reason)

    def _fallback(self, reason: str) -> Route:
        self.metrics.replica_fallbacks.labels(reason=reason).inc()
        return Route(None, None, reason)

    async def _replay_lsn(self, replica: Replica) -> int | None:
        try:
            # A replica slow to answer is not down, but the read will not wait for it longer.
            async with asyncio.timeout(self.wait_seconds + _POLL_TIMEOUT_SECONDS):
                async with replica.engine.connect() as connection:
                    value = await connection.scalar(
                        text("SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint")
                    )
        except TimeoutError:
            return None
        except Exception as exc:
            self.mark_down(replica, exc)
            return None
        if value is None:
            return None
        replica.replay_lsn = max(replica.replay_lsn, int(value))
        return int(value)

    def sessionmaker_for(
        self, route: Route, token: int | None, *, transaction: bool = False
    ) -> async_sessionmaker[AsyncSession]:
        """Sessions of the route's server that fall back to the primary if a replica fails:
        without a transaction (autocommit), or in a read-only one (`transaction`, for a
        server-side cursor such as the export's)."""
        self.metrics.db_reads.labels(target=route.target).inc()
        routing = _current.get()
        if routing is not None:
            routing.read_from = route.target
        primary: AsyncEngine = (
            self.primary_engine if transaction else self.primary_reads.kw["bind"]
        )
        info: dict[str, Any] = {REQUIRED_LSN: token}
        if route.replica is None:
            return async_sessionmaker(
                primary, class_=RoutedSession, expire_on_commit=False, info=info
            )
        info[READ_LSN] = route.read_lsn or 0
        info[_ROUTE] = (self, route.replica, primary)
        bind = route.replica.engine if transaction else route.replica.sessionmaker.kw["bind"]
        return async_sessionmaker(bind, class_=RoutedSession, expire_on_commit=False, info=info)

    def mark_down(self, replica: Replica, exc: BaseException | str) -> None:
        reason = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}".strip()
        if replica.healthy:
            logger.warning("read replica %s (%s) left out of reads: %s",
                           replica.name, replica.description, reason)
        replica.healthy = False
        replica.reason = reason[:300]
        self.metrics.replica_up.labels(replica=replica.name).set(0)

    # ---- health ----

    async def check(self) -> None:
        """Read the primary's WAL position, then every replica's replay position and lag."""
        now = time.monotonic()
        try:
            async with asyncio.timeout(_CHECK_TIMEOUT_SECONDS):
                async with self.primary_engine.connect() as connection:
                    primary = await connection.scalar(
                        text("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
                    )
            self._primary_history.append((now, int(primary)))
        except Exception:
            # The primary's position is unknown: lag is judged on the samples kept.
            logger.debug("replica check: primary WAL position unavailable", exc_info=True)
        await asyncio.gather(*(self._check_one(replica) for replica in self.replicas))

    async def _check_one(self, replica: Replica) -> None:
        try:
            async with asyncio.timeout(_CHECK_TIMEOUT_SECONDS):
                async with replica.engine.connect() as connection:
                    row = (await connection.execute(text(
                        "SELECT pg_is_in_recovery(), "
                        "(pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint"
                    ))).one()
        except Exception as exc:
            replica.lag_seconds = None
            self.mark_down(replica, exc)
            return
        replica.checked_at = time.monotonic()
        in_recovery, replay = bool(row[0]), row[1]
        if not in_recovery or replay is None:
            replica.lag_seconds = None
            self.mark_down(replica, "not a standby (pg_is_in_recovery() is false)")
            return
        replica.replay_lsn = max(replica.replay_lsn, int(replay))
        lag = self._lag(replica.replay_lsn, replica.checked_at)
        replica.lag_seconds = lag
        if lag is not None:
            self.metrics.replica_lag.labels(replica=replica.name).set(lag)
        if lag is not None and lag > self.max_lag_seconds:
            self.mark_down(
                replica, f"replays {lag:.1f} s behind the primary "
                f"(MEMORY_REPLICA_MAX_LAG_SECONDS={self.max_lag_seconds:g})"
            )
            return
        if not replica.healthy and replica.reason != NOT_CHECKED:
            logger.info("read replica %s (%s) back in use (lag %s s)", replica.name,
                        replica.description, "unknown" if lag is None else f"{lag:.2f}")
        replica.healthy = True
        replica.reason = None
        self.metrics.replica_up.labels(replica=replica.name).set(1)

    def _lag(self, replay: int, now: float) -> float | None:
        """At most how far behind the primary a replica that replayed `replay` is: the time since
        the newest sample of the primary's position it has reached (0 if it reached the last)."""
        if not self._primary_history:
            return None
        newest_time, newest = self._primary_history[-1]
        if replay >= newest:
            return 0.0
        for sampled_at, position in reversed(self._primary_history):
            if position <= replay:
                return max(0.0, now - sampled_at)
        # Behind every sample kept: at least as far behind as the oldest one.
        return max(0.0, now - self._primary_history[0][0])

    async def run_checks(self, stop: asyncio.Event) -> None:
        """Check every MEMORY_REPLICA_CHECK_INTERVAL_SECONDS until `stop` is set (the first
        check is the caller's, before the first request)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.check_interval_seconds)
            if stop.is_set():
                return
            try:
                await self.check()
            except Exception:
                logger.exception("replica check failed")

    def details(self) -> list[dict[str, Any]]:
        return [replica.detail() for replica in self.replicas]


@contextlib.asynccontextmanager
async def open_replicas(
    settings: Settings,
    primary: AsyncEngine,
    primary_reads: async_sessionmaker[AsyncSession],
    metrics: Metrics,
) -> AsyncIterator[ReplicaPool]:
    """An engine per replica (pools sized as the primary's), checked once before the first
    request and then in the background; closed when the block ends."""
    replicas = []
    for index, secret in enumerate(settings.database_replica_urls):
        url = secret.get_secret_value()
        engine = create_engine(
            url,
            pool_size=settings.pool_size,
            max_overflow=settings.db_max_overflow,
            hnsw_ef_search=settings.hnsw_ef_search,
            pool_pre_ping=settings.db_pool_pre_ping,
            pool_timeout=settings.db_pool_timeout_seconds,
            application_name="memory-layer-read",
            transaction_pooler=settings.db_transaction_pooler,
        )
        replicas.append(Replica(
            name=f"replica-{index}",
            description=describe_url(url),
            engine=engine,
            sessionmaker=create_read_sessionmaker(
                engine, autocommit=not settings.db_transaction_pooler
            ),
        ))
    pool = ReplicaPool(
        primary_engine=primary,
        primary_reads=primary_reads,
        replicas=replicas,
        metrics=metrics,
        max_lag_seconds=settings.replica_max_lag_seconds,
        wait_seconds=settings.replica_wait_ms / 1000,
        check_interval_seconds=settings.replica_check_interval_seconds,
    )
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        await pool.check()
        for replica in replicas:
            logger.info("read replica %s (%s): %s", replica.name, replica.description,
                        "in use" if replica.healthy else f"not in use ({replica.reason})")
        task = asyncio.create_task(pool.run_checks(stop), name="replica-checks")
        yield pool
    finally:
        stop.set()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for replica in replicas:
            await replica.engine.dispose()


# ---- sessions ----

# SQLSTATE classes of a server that went away or is going: connection exceptions (08) and
# operator intervention (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now);
# 40001 on a standby is a query cancelled by a recovery conflict.
_FAILOVER_STATES = ("08", "57P", "40001")


def _replica_failed(exc: BaseException) -> bool:
    if isinstance(exc, OSError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        state = getattr(exc.orig, "sqlstate", None) or getattr(
            getattr(exc.orig, "__cause__", None), "sqlstate", None
        )
        return isinstance(state, str) and state.startswith(_FAILOVER_STATES)
    return False


class RoutedSession(AsyncSession):
    """A read session (no transaction) on a replica that moves to the primary if the replica
    fails under it: the statement that failed runs again there, the request does not fail."""

    async def _on_replica(self, call: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await call()
        except Exception as exc:
            route = self.info.get(_ROUTE)
            if route is None or not _replica_failed(exc):
                raise
            pool, replica, primary = route
            pool.mark_down(replica, exc)
            pool.metrics.replica_fallbacks.labels(reason="replica_failed").inc()
            del self.info[_ROUTE]
            with contextlib.suppress(Exception):
                await self.rollback()
            self.bind = primary
            self.sync_session.bind = primary.sync_engine
            routing = _current.get()
            if routing is not None:
                routing.read_from = PRIMARY
            pool.metrics.db_reads.labels(target=PRIMARY).inc()
            # READ_LSN stays the replica's: what was read there is part of this answer.
            return await call()

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._on_replica(lambda: super(RoutedSession, self).execute(*args, **kwargs))

    async def scalar(self, *args: Any, **kwargs: Any) -> Any:
        return await self._on_replica(lambda: super(RoutedSession, self).scalar(*args, **kwargs))

    async def scalars(self, *args: Any, **kwargs: Any) -> Any:
        return await self._on_replica(lambda: super(RoutedSession, self).scalars(*args, **kwargs))

    async def stream(self, *args: Any, **kwargs: Any) -> Any:
        # Only the opening is retried: rows a stream already sent cannot be taken back.
        return await self._on_replica(lambda: super(RoutedSession, self).stream(*args, **kwargs))

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        return await self._on_replica(lambda: super(RoutedSession, self).get(*args, **kwargs))


def read_lsn_of(session: AsyncSession) -> int | None:
    """The WAL position a read session's data is known to include; None: the primary's (all)."""
    value = session.info.get(READ_LSN)
    return int(value) if value is not None else None


def required_lsn_of(session: AsyncSession) -> int | None:
    """The WAL position the request asked its reads to include (its consistency token)."""
    value = session.info.get(REQUIRED_LSN)
    return int(value) if value is not None else None


# ---- the token on responses ----


class ConsistencyTokenMiddleware:
    """Puts `Memory-Consistency-Token` (the primary's WAL insert position, read after the commit)
    on the response of every request that committed on the primary, and `Memory-Read-From` on
    reads. Installed only with replicas configured: the read costs one round trip per write."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        routing = RequestRouting()
        reset = _current.set(routing)
        pool: ReplicaPool | None = getattr(scope["app"].state, "replicas", None)

        async def send_with_token(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if routing.committed and pool is not None:
                    token = await _insert_lsn(pool.primary_engine)
                    if token is not None:
                        headers.append(
                            (CONSISTENCY_TOKEN_HEADER.lower().encode(), token.encode("latin-1"))
                        )
                if routing.read_from is not None:
                    headers.append(
                        (READ_FROM_HEADER.lower().encode(), routing.read_from.encode("latin-1"))
                    )
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_token)
        finally:
            _current.reset(reset)


async def _insert_lsn(engine: AsyncEngine) -> str | None:
    try:
        async with engine.connect() as connection:
            value = await connection.scalar(text("SELECT pg_current_wal_insert_lsn()::text"))
    except Exception:
        logger.warning("could not read the primary's WAL position for the consistency token",
                       exc_info=True)
        return None
    return str(value) if value is not None else None
