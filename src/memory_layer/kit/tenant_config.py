"""Each tenant's policy and channel rules, kept in the process while it hears of their changes.

Every request reads its tenant's policy (the tenant rate limit, quotas, audit level) and every
write its channel rules; reading them from PostgreSQL cost each request a pooled connection and a
query or two. This cache keeps what was read, per (kind, tenant), for as long as the process
LISTENs on the wake-up channel (kit/db/wakeups.py): triggers on `tenant_policies` and `channels`
(migration 0016) send `config:<tenant_id>` with every change, at commit, to every process, and
the process drops that tenant's entries. So a change made anywhere (another process, the CLI,
plain SQL) is seen within the notification's delivery, and the process that made it drops its
copy as its transaction commits (`note_config_change`, run by kit/db/session.py's unit of work).

While the listener is not connected nothing is kept or served from memory (every read goes to
the database, as without a cache), and every entry is dropped when it connects or disconnects:
notifications sent meanwhile are lost. A read that began before a change was heard is not kept
(a generation counter), so a stale copy never outlives its notification.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.kit.db.wakeups import Wakeups

T = TypeVar("T")

PREFIX = "config:"
# At most this many entries; past it the cache starts again empty (reads refill it).
MAX_ENTRIES = 10_000
# session.info key: the cache a session's committed changes invalidate, and the tenants changed.
SESSION_TENANT_CONFIG = "memory_layer.tenant_config"
SESSION_CONFIG_CHANGES = "memory_layer.tenant_config_changes"


class TenantConfigCache:
    def __init__(self, wakeups: Wakeups) -> None:
        self._wakeups = wakeups
        self._entries: dict[tuple[str, str], Any] = {}
        self._generation = 0
        self.hits = 0
        self.misses = 0
        wakeups.subscribe(self._on_notification)

    @property
    def active(self) -> bool:
        return self._wakeups.listening.is_set()

    async def get(self, kind: str, tenant_id: str, load: Callable[[], Awaitable[T]]) -> T:
        """The tenant's `kind` (policy, channels): the kept copy, else `load()` (kept when no
        change was heard while it ran)."""
        if not self.active:
            return await load()
        key = (kind, tenant_id)
        if key in self._entries:
            self.hits += 1
            value: T = self._entries[key]
            return value
        self.misses += 1
        generation = self._generation
        value = await load()
        if generation == self._generation and self.active:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = value
        return value

    def invalidate(self, tenant_id: str | None) -> None:
        """Drop a tenant's entries (None: every tenant's)."""
        self._generation += 1
        if tenant_id is None:
            self._entries.clear()
            return
        for key in [key for key in self._entries if key[1] == tenant_id]:
            del self._entries[key]

    def _on_notification(self, key: str | None) -> None:
        if key is None:
            self.invalidate(None)
        elif key.startswith(PREFIX):
            self.invalidate(key[len(PREFIX):])


def note_config_change(session: AsyncSession, tenant_id: str) -> None:
    """Record that the session's transaction changes the tenant's policy or channels: the
    process's cache drops them once it commits (the trigger tells the other processes)."""
    changed: set[str] = session.info.setdefault(SESSION_CONFIG_CHANGES, set())
    changed.add(tenant_id)


def publish_config_changes(session: AsyncSession) -> None:
    """After the commit: the process's cache forgets the tenants the session changed."""
    changed: set[str] = session.info.pop(SESSION_CONFIG_CHANGES, set())
    cache: TenantConfigCache | None = session.info.get(SESSION_TENANT_CONFIG)
    if cache is not None:
        for tenant_id in changed:
            cache.invalidate(tenant_id)


def tenant_config_of(state: Any) -> TenantConfigCache | None:
    """The app's cache (app.state.tenant_config), or None where there is none."""
    cache: TenantConfigCache | None = getattr(state, "tenant_config", None)
    return cache
