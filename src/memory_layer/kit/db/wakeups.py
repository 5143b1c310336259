"""Wake-ups across processes: one LISTEN connection per process, waiters by key.

A writer that frees something others wait for (a released lock, a new event in a stream) runs
`pg_notify(CHANNEL, key)` in its transaction; PostgreSQL delivers it at commit to every process
listening, and each wakes its local waiters of that key. No waiter polls: it sleeps until its
key is notified or until its own deadline (the end of a lease, the end of its wait).

A waiter registers *before* it checks the database, so a notification that arrives between the
check and the sleep is not lost. While the connection is down (a restart of PostgreSQL, a
transaction pooler that cannot LISTEN) waiters fall back to sleeping at most
`fallback_seconds` at a time, so they are late, never stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated

import asyncpg
from fastapi import Depends, Request

logger = logging.getLogger(__name__)

CHANNEL = "memory_layer_wakeups"
# pg_notify payloads are limited to 8000 bytes; keys are far shorter (tenant and name are bounded).
MAX_KEY_BYTES = 7000


class Wakeups:
    """The process's listener and its waiters (built in the lifespan, one per process)."""

    def __init__(self, dsn: str | None, *, fallback_seconds: float = 0.5) -> None:
        self.dsn = dsn
        self.fallback_seconds = fallback_seconds
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self.listening = asyncio.Event()
        # Called with every notification's key, and with None whenever listening starts or stops
        # (what was sent meanwhile is unknown): per-process copies that notifications keep
        # current (kit/tenant_config.py).
        self._subscribers: list[Callable[[str | None], None]] = []

    def subscribe(self, callback: Callable[[str | None], None]) -> None:
        self._subscribers.append(callback)

    def _tell_subscribers(self, key: str | None) -> None:
        for callback in self._subscribers:
            callback(key)

    @contextlib.contextmanager
    def waiter(self, key: str) -> Iterator[asyncio.Event]:
        """An event set when `key` is notified; register it before checking the database."""
        event = asyncio.Event()
        self._waiters[key].add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[key]

    async def sleep(self, event: asyncio.Event, seconds: float) -> bool:
        """Sleep until `event` is set or `seconds` have passed (at most `fallback_seconds` while
        nobody listens); True when woken by a notification."""
        if seconds <= 0:
            return event.is_set()
        if not self.listening.is_set():
            seconds = min(seconds, self.fallback_seconds)
        try:
            await asyncio.wait_for(event.wait(), timeout=seconds)
        except TimeoutError:
            return False
        event.clear()
        return True

    def notify_local(self, key: str) -> None:
        for event in self._waiters.get(key, ()):
            event.set()

    def _on_notify(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        self._tell_subscribers(payload)
        self.notify_local(payload)

    async def run(self, stop: asyncio.Event, retry_seconds: float = 2.0) -> None:
        """LISTEN until `stop`; reconnect after losing the connection (waiters fall back to short
        sleeps meanwhile)."""
        if self.dsn is None:
            return
        while not stop.is_set():
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(self.dsn)
                await connection.add_listener(CHANNEL, self._on_notify)
                self._tell_subscribers(None)
                self.listening.set()
                # Whatever was released while nobody listened: every waiter checks again.
                for key in list(self._waiters):
                    self.notify_local(key)
                while not connection.is_closed() and not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=retry_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("cannot LISTEN for wake-ups (%s); waiters poll until it can", exc)
            finally:
                self.listening.clear()
                self._tell_subscribers(None)
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(connection.close(timeout=2))
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=retry_seconds)


@contextlib.asynccontextmanager
async def listening(wakeups: Wakeups) -> AsyncIterator[Wakeups]:
    """Run the listener for the duration of the block (the app's lifespan)."""
    stop = asyncio.Event()
    task = asyncio.create_task(wakeups.run(stop), name="wakeups-listener")
    try:
        # The first connection before the first request, so early waiters are woken too.
        if wakeups.dsn is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeups.listening.wait(), timeout=5)
        yield wakeups
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def wakeups_of(request: Request) -> Wakeups:
    wakeups: Wakeups = request.app.state.wakeups
    return wakeups


async def get_wakeups(request: Request) -> Wakeups:
    return wakeups_of(request)


WakeupsDep = Annotated[Wakeups, Depends(get_wakeups)]
