"""Caches every replica shares in Redis: query vectors, and search results per tenant generation.

Search results are stored under the tenant's *generation*, a random token in Redis that every
write of the tenant replaces after its commit and before its 2xx (`note_write` in the write's
transaction, `publish_writes` after the commit). A search reads the generation before it queries
the database, so a result computed while a write commits lands under a generation that is
already gone and is never served. Tokens are random, not counters: a generation key that Redis
evicts or loses comes back as a new token, never as an old one whose entries might still live.
A retention run over every tenant replaces the *epoch* that every generation includes.

Redis unreachable: look-ups miss, stores are skipped, the request goes on uncached, and the
failure is counted (`memory_cache_errors_total`). A replacement that fails is kept and retried
before this process's next use of the cache; entries a failed replacement could not invalidate
die with their TTL (MEMORY_SEARCH_CACHE_TTL_SECONDS, 30 s by default), which bounds how stale a
result can be after Redis failed during a write.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from array import array
from collections.abc import Iterable, MutableMapping
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.config import Settings
from memory_layer.kit.observability.metrics import Metrics

# app.state.tenant_sizes, per tenant and kept a minute: its message count, its partition's rows
# and the partition's name, which choose how it is searched (search.service.TenantExtent).
TenantSizes = MutableMapping[str, tuple[int, int, str]]

logger = logging.getLogger(__name__)

QUERY_VECTORS = "query_vectors"
SEARCH_RESULTS = "search_results"
# Keys of AsyncSession.info: the cache (set by the sessionmaker) and the tenants written.
SESSION_CACHE = "search_cache"
SESSION_WRITES = "written_tenants"
ALL_TENANTS = "*"
WARNING_INTERVAL_SECONDS = 30.0
_FAILURES = (RedisError, OSError, TimeoutError)
# A search cache entry starts with the WAL position its data includes (8 bytes, big-endian); the
# largest value marks one computed on the primary.
_LSN_BYTES = 8
_FROM_PRIMARY = 2**64 - 1


def digest(*parts: object) -> str:
    """A short stable hash of the parts (texts, filters), for keys that never hold the text."""
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:32]


class _Redis:
    """A cache's Redis access: prefixed keys, failures counted and logged at most every 30 s."""

    def __init__(self, redis: Redis, prefix: str, name: str, metrics: Metrics) -> None:
        self.redis = redis
        self.prefix = f"{prefix}:{name}"
        self.name = name
        self.metrics = metrics
        self._warned_at = -float("inf")

    def failed(self, exc: BaseException) -> None:
        self.metrics.cache_errors.labels(cache=self.name).inc()
        now = time.monotonic()
        if now - self._warned_at >= WARNING_INTERVAL_SECONDS:
            self._warned_at = now
            logger.warning("cache %s: Redis unreachable (%s); going on uncached", self.name, exc)

    def counted(self, value: bytes | str | None) -> bytes | None:
        # The client is built without decode_responses: values are bytes.
        if isinstance(value, str):
            value = value.encode()
        if value is None:
            self.metrics.cache_misses.labels(cache=self.name).inc()
        else:
            self.metrics.cache_hits.labels(cache=self.name).inc()
        return value


class QueryVectorCache(_Redis):
    """Query vectors keyed by (model, dimension, hash of the text), kept a TTL."""

    def __init__(self, redis: Redis, settings: Settings, metrics: Metrics) -> None:
        super().__init__(redis, settings.redis_key_prefix, QUERY_VECTORS, metrics)
        self.ttl = settings.shared_query_cache_ttl_seconds

    def _key(self, model: str, dimensions: int, text: str) -> str:
        return f"{self.prefix}:{model}:{dimensions}:{digest(text)}"

    async def get(self, model: str, dimensions: int, text: str) -> list[float] | None:
        try:
            raw = self.counted(await self.redis.get(self._key(model, dimensions, text)))
        except _FAILURES as exc:
            self.failed(exc)
            return None
        if raw is None:
            return None
        vector = array("d")
        vector.frombytes(raw)
        return vector.tolist() if len(vector) == dimensions else None

    async def put(self, model: str, dimensions: int, text: str, vector: list[float]) -> None:
        try:
            await self.redis.set(
                self._key(model, dimensions, text), array("d", vector).tobytes(), ex=self.ttl
            )
        except _FAILURES as exc:
            self.failed(exc)


class SearchCache(_Redis):
    """Search results per (tenant, generation, request), kept MEMORY_SEARCH_CACHE_TTL_SECONDS."""

    def __init__(self, redis: Redis, settings: Settings, metrics: Metrics) -> None:
        super().__init__(redis, settings.redis_key_prefix, SEARCH_RESULTS, metrics)
        self.ttl = settings.search_cache_ttl_seconds
        self.max_bytes = settings.search_cache_max_bytes
        self._unpublished: set[str] = set()

    def _generation_key(self, tenant_id: str) -> str:
        return f"{self.prefix}:generation:{tenant_id}"

    async def generation(self, tenant_id: str) -> str | None:
        """The tenant's current generation (epoch included); None when Redis is unreachable."""
        epoch_key, tenant_key = self._generation_key(ALL_TENANTS), self._generation_key(tenant_id)
        try:
            await self._publish_pending()
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(epoch_key, uuid.uuid4().hex, nx=True)
                pipe.set(tenant_key, uuid.uuid4().hex, nx=True)
                pipe.mget(epoch_key, tenant_key)
                *_, (epoch, generation) = await pipe.execute()
        except _FAILURES as exc:
            self.failed(exc)
            return None
        return f"{epoch.decode()}.{generation.decode()}"

    def _entry_key(self, tenant_id: str, generation: str, request: str) -> str:
        return f"{self.prefix}:entry:{tenant_id}:{generation}:{request}"

    async def get(
        self, tenant_id: str, generation: str, request: str, floor: int | None = None
    ) -> bytes | None:
        """The entry, if it includes the WAL position `floor` (a read's consistency token)."""
        try:
            raw = await self.redis.get(self._entry_key(tenant_id, generation, request))
        except _FAILURES as exc:
            self.failed(exc)
            return None
        if isinstance(raw, str):  # the client is built without decode_responses
            raw = raw.encode()
        if raw is not None:
            read_at = int.from_bytes(raw[:_LSN_BYTES], "big")
            raw = raw[_LSN_BYTES:] if floor is None or read_at >= floor else None
        return self.counted(raw)

    async def put(
        self, tenant_id: str, generation: str, request: str, value: bytes,
        max_seconds: int | None = None, read_lsn: int | None = None,
    ) -> None:
        """Keep the entry for the cache's TTL, or `max_seconds` when shorter (the first expiry
        of a message it holds). `read_lsn`: the WAL position a replica that computed it had
        replayed (None: the primary, which has every write the generation covers); a read whose
        token is past it does not take the entry (a replica behind the generation's writes must
        not answer a client that waits for one of them)."""
        if len(value) > self.max_bytes:
            return
        ttl = self.ttl if max_seconds is None else max(1, min(self.ttl, max_seconds))
        read_at = _FROM_PRIMARY if read_lsn is None else read_lsn
        try:
            await self.redis.set(
                self._entry_key(tenant_id, generation, request),
                read_at.to_bytes(_LSN_BYTES, "big") + value, ex=ttl,
            )
        except _FAILURES as exc:
            self.failed(exc)

    async def invalidate(self, tenant_ids: Iterable[str]) -> None:
        """New generations for these tenants (ALL_TENANTS: a new epoch for everyone)."""
        self._unpublished.update(tenant_ids)
        try:
            await self._publish_pending()
        except _FAILURES as exc:
            self.failed(exc)

    async def _publish_pending(self) -> None:
        if not self._unpublished:
            return
        pending = sorted(self._unpublished)
        async with self.redis.pipeline(transaction=False) as pipe:
            for tenant_id in pending:
                pipe.set(self._generation_key(tenant_id), uuid.uuid4().hex)
            await pipe.execute()
        self._unpublished.difference_update(pending)


def build_caches(
    settings: Settings, redis: Redis | None, metrics: Metrics
) -> tuple[QueryVectorCache | None, SearchCache | None]:
    """The shared caches the settings ask for; none without Redis."""
    if redis is None:
        return None, None
    vectors = (
        QueryVectorCache(redis, settings, metrics) if settings.shared_query_cache_ttl_seconds else None
    )
    searches = SearchCache(redis, settings, metrics) if settings.search_cache_ttl_seconds else None
    return vectors, searches


def note_write(session: AsyncSession, tenant_id: str | None) -> None:
    """Record that the session's transaction changes the tenant's messages (None: every tenant)."""
    written: set[str] = session.info.setdefault(SESSION_WRITES, set())
    written.add(ALL_TENANTS if tenant_id is None else tenant_id)


async def publish_writes(session: AsyncSession) -> None:
    """After the commit: invalidate the cached searches of the tenants the session wrote."""
    written: set[str] = session.info.pop(SESSION_WRITES, set())
    cache: SearchCache | None = session.info.get(SESSION_CACHE)
    if written and cache is not None:
        await cache.invalidate(written)


def session_info(cache: SearchCache | None) -> dict[str, Any]:
    """`info=` of a sessionmaker whose sessions invalidate this cache after their writes."""
    return {SESSION_CACHE: cache} if cache is not None else {}
