"""Rate limits: slowapi's limit syntax, counted with `limits`, the library slowapi is built on.

slowapi's own middleware and decorators are not used: they call Redis synchronously (blocking the
event loop of every request) and cannot see the tenant, which is known only once the API key has
been looked up. The storages and the syntax are the same; the count is a sliding window per key
(the current fixed window's count plus the previous one's, weighted by how much of it is still
inside the window), in Redis when MEMORY_REDIS_URL is set (every replica counts against the same
limit) and in the process otherwise. A sliding-window counter is two numbers per key: `limits`'
exact moving window keeps every request of the window in a list, which in memory cost each
request a list insert and a thread hop growing with the traffic (docs/benchmarks.md, "CPU per
request").
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from enum import StrEnum

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import Redis

from memory_layer.config import Settings
from memory_layer.kit.errors import DomainError, ServiceUnavailable
from memory_layer.kit.observability.metrics import Metrics
from memory_layer.policies.service import RequestPolicies

logger = logging.getLogger(__name__)

# A warning per this many seconds at most while Redis is down, not one per request.
WARNING_INTERVAL_SECONDS = 30.0


class LimitScope(StrEnum):
    global_ = "global"
    tenant = "tenant"


@dataclass(frozen=True)
class Verdict:
    """The outcome of counting one request against the tightest of its limits."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: float  # Unix time when the window has room again

    def headers(self, now: float | None = None) -> dict[str, str]:
        """X-RateLimit-* (and, when refused, Retry-After) for the response."""
        now = time.time() if now is None else now
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.reset_at - now)))
        return headers


class RateLimited(DomainError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, scope: LimitScope, verdict: Verdict) -> None:
        super().__init__(
            f"{scope.value} rate limit of {verdict.limit} requests exceeded; retry after the "
            "Retry-After header's seconds"
        )
        self.verdict = verdict


def parse_limits(text: str) -> list[RateLimitItem]:
    """`200/minute`, `10/second;600/minute` (slowapi's syntax); empty: no limit."""
    return parse_many(text) if text else []


async def tenant_limit_for(policies: RequestPolicies, tenant_id: str) -> list[RateLimitItem]:
    """The limits of one tenant: its policy's `rate_limit` override, else MEMORY_TENANT_RATE_LIMIT.

    The one place a tenant's limits are decided. Read from the database on every request (one
    primary-key read on a short session of its own, which the request's write then reuses), so a
    policy change applies to the next request on every replica.
    """
    return parse_limits((await policies.get(tenant_id)).rate_limit)


class RateLimiter:
    """Counts requests per (scope, key) in a sliding window; one per app, built in the lifespan."""

    def __init__(
        self, storage: Storage, *, metrics: Metrics, fail_open: bool, shared: bool
    ) -> None:
        self.storage = storage
        self.strategy = SlidingWindowCounterRateLimiter(storage)
        self.metrics = metrics
        self.fail_open = fail_open
        self.shared = shared
        self._warned_at = -math.inf

    @classmethod
    def build(cls, settings: Settings, redis: Redis | None, metrics: Metrics) -> RateLimiter:
        """Redis storage on the app's client when MEMORY_REDIS_URL is set, else in-process."""
        storage: Storage
        if redis is None:
            storage = MemoryStorage()
        else:
            # The URL only picks the implementation; the connections are the app's client's.
            storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=f"{settings.redis_key_prefix}:ratelimit",
                connection_pool=redis.connection_pool,  # type: ignore[arg-type]  # typed too narrowly
                wrap_exceptions=True,
            )
        return cls(
            storage, metrics=metrics, fail_open=settings.rate_limit_fail_open,
            shared=redis is not None,
        )

    async def hit(
        self, scope: LimitScope, key: str, items: list[RateLimitItem]
    ) -> Verdict | None:
        """Count one request; the tightest limit's verdict, or None when nothing was counted
        (no limits, or the storage is unreachable and the limiter fails open)."""
        if not items:
            return None
        try:
            verdicts = [await self._hit_one(scope, key, item) for item in items]
        except Exception as exc:  # the storage wraps every Redis failure (wrap_exceptions)
            self.metrics.rate_limit_storage_errors.labels(scope=scope.value).inc()
            now = time.monotonic()
            if now - self._warned_at >= WARNING_INTERVAL_SECONDS:
                self._warned_at = now
                logger.warning(
                    "rate limit storage unreachable (%s): requests are %s", exc,
                    "served uncounted" if self.fail_open else "refused with 503",
                )
            if self.fail_open:
                return None
            raise ServiceUnavailable(
                "the rate limit storage is unreachable; retry shortly",
                code="rate_limit_unavailable",
            ) from exc
        refused = [verdict for verdict in verdicts if not verdict.allowed]
        if refused:
            verdict = max(refused, key=lambda v: v.reset_at)
            self.metrics.rate_limited.labels(scope=scope.value).inc()
            raise RateLimited(scope, verdict)
        return min(verdicts, key=lambda v: v.remaining)

    async def _hit_one(self, scope: LimitScope, key: str, item: RateLimitItem) -> Verdict:
        allowed = await self.strategy.hit(item, scope.value, key)
        stats = await self.strategy.get_window_stats(item, scope.value, key)
        return Verdict(
            allowed=allowed, limit=item.amount, remaining=stats.remaining,
            reset_at=stats.reset_time,
        )
