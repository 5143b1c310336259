"""One middleware observes every HTTP request: its Prometheus series and its access line.

Both need the same two facts, the status sent and the time taken, so one send wrapper captures
the status once and one clock times the request (two middlewares used to do each, on every
request).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memory_layer.kit.observability.logging import TENANT_STATE_KEY, access_logger
from memory_layer.kit.observability.metrics import Metrics


class RequestActivity:
    """When this process last served an HTTP request: background work that can wait (context
    vectors) runs once the process has been idle a while, so it never takes the cores from
    requests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.in_flight = 0
        self.last_seen = clock()

    def begin(self) -> None:
        self.in_flight += 1
        self.last_seen = self.clock()

    def end(self) -> None:
        self.in_flight -= 1
        self.last_seen = self.clock()

    def idle_seconds(self) -> float:
        """Seconds since the last request ended; 0 while one is being served."""
        if self.in_flight > 0:
            return 0.0
        return max(0.0, self.clock() - self.last_seen)


class QuietGate:
    """When background work that can wait (context vectors, consolidation) may run in a process
    that serves requests: once it has served none for `idle_seconds`, or once the work has been
    put off for `max_defer_seconds`, after which it runs until the caller says it is `drained()`.
    So a steady trickle of requests (a client polling a status route) delays it, never stops it.
    Without `activity` (a process that serves no requests) or with `idle_seconds` 0 it is always
    open."""

    def __init__(
        self, activity: RequestActivity | None, idle_seconds: float, max_defer_seconds: float
    ) -> None:
        self.activity = activity
        self.idle_seconds = idle_seconds
        self.max_defer_seconds = max_defer_seconds
        # Since when the work has been put off (activity.clock's time); None: not put off.
        self._since: float | None = None

    def seconds_until_open(self) -> float:
        """0 when the work may run now; else how long to wait before asking again."""
        if self.activity is None or self.idle_seconds <= 0:
            return 0.0
        idle = self.activity.idle_seconds()
        if idle >= self.idle_seconds:
            return 0.0
        now = self.activity.clock()
        if self._since is None:
            self._since = now
        remaining = self._since + self.max_defer_seconds - now
        if remaining <= 0:
            return 0.0
        return max(0.05, min(self.idle_seconds - idle, remaining))

    def is_open(self) -> bool:
        return self.seconds_until_open() == 0.0

    def drained(self) -> None:
        """The work is done: the next work waits for a quiet moment again."""
        self._since = None


class RequestObservationMiddleware:
    """Counts and times every request under its route template (`/v1/messages/{message_id}`),
    and logs one line for it: request id (from the logging context), method, route template,
    tenant, status, duration.

    The tenant is what the auth dependency recorded in request.state (see `record_tenant`);
    requests that never authenticated (probes, /metrics, 401s) log none.
    """

    def __init__(
        self, app: ASGIApp, metrics: Metrics, activity: RequestActivity | None = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.activity = activity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        if self.activity is not None:
            self.activity.begin()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if self.activity is not None:
                self.activity.end()
            seconds = time.perf_counter() - started
            # path_format: the template without convertors (`{tenant_id}`, not `{tenant_id:path}`).
            template = getattr(scope.get("route"), "path_format", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method=method, route=template, status=str(status)).inc()
            self.metrics.request_seconds.labels(method=method, route=template).observe(seconds)
            access_logger.info(
                "request",
                extra={
                    "method": method,
                    "route": template,
                    "status": status,
                    "duration_seconds": round(seconds, 6),
                    "tenant_id": state.get(TENANT_STATE_KEY),
                },
            )
