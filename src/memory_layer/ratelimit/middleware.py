"""The global limit (per client address) as ASGI middleware, and the X-RateLimit-* headers.

The middleware counts every request but the probes and `/metrics` before it reaches a route,
and adds the headers of the tightest limit counted for the request (global, or the tenant's from
`deps.py`) to whatever response goes out, a 429 included.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memory_layer.kit.errors import DomainError
from memory_layer.kit.http.errors import error_body
from memory_layer.ratelimit.service import LimitScope, RateLimiter, Verdict, parse_limits

# Never limited: probes must answer while the service is busy, and Prometheus must see it.
EXEMPT_PATHS = frozenset({"/v1/admin/health", "/v1/admin/readiness", "/metrics"})
_VERDICTS = "rate_limit_verdicts"


def record_verdict(scope: Scope, verdict: Verdict) -> None:
    """Remember a limit's verdict for the response headers."""
    state: dict[str, Any] = scope.setdefault("state", {})
    state.setdefault(_VERDICTS, []).append(verdict)


def _header_verdict(scope: Scope) -> Verdict | None:
    verdicts: list[Verdict] = scope.get("state", {}).get(_VERDICTS, [])
    refused = [verdict for verdict in verdicts if not verdict.allowed]
    if refused:
        return refused[0]
    return min(verdicts, key=lambda v: v.remaining, default=None)


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, global_rate_limit: str) -> None:
        self.app = app
        self.limits = parse_limits(global_rate_limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # CORS preflights carry no key and are answered by the CORS middleware.
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        # Built in the lifespan, on the app's Redis client when there is one.
        limiter: RateLimiter | None = getattr(scope["app"].state, "rate_limiter", None)
        if limiter is None:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else "unknown"
        try:
            verdict = await limiter.hit(LimitScope.global_, address, self.limits)
        except DomainError as exc:  # RateLimited, or the storage down with fail-open off
            if verdict_of := getattr(exc, "verdict", None):
                record_verdict(scope, verdict_of)
            response = JSONResponse(
                status_code=exc.status_code, content=error_body(exc.code, exc.detail)
            )
            await response(scope, receive, self._with_headers(scope, send))
            return
        if verdict is not None:
            record_verdict(scope, verdict)
        await self.app(scope, receive, self._with_headers(scope, send))

    @staticmethod
    def _with_headers(scope: Scope, send: Send) -> Send:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                verdict = _header_verdict(scope)
                if verdict is not None:
                    headers = MutableHeaders(scope=message)
                    for name, value in verdict.headers().items():
                        headers[name] = value
            await send(message)

        return send_with_headers
