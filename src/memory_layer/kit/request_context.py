"""The request id of the request being served, readable anywhere below the ASGI app (the audit
log stores it). `RequestIdMiddleware` takes it from the X-Request-ID header; other middleware
that assigns ids may set `request_id_var` instead."""

from __future__ import annotations

import re
from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

HEADER = b"x-request-id"
# Ids are echoed into logs and the audit log: printable, no spaces, bounded.
_VALID = re.compile(r"^[\x21-\x7e]{1,128}$")

request_id_var: ContextVar[str | None] = ContextVar("memory_layer_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being served, or None outside a request (CLI, scheduler)."""
    return request_id_var.get()


class RequestIdMiddleware:
    """Sets `request_id_var` from a valid X-Request-ID header for the request's duration."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        value: str | None = None
        for name, raw in scope["headers"]:
            if name == HEADER:
                decoded = raw.decode("latin-1")
                value = decoded if _VALID.match(decoded) else None
                break
        token = request_id_var.set(value)
        try:
            await self.app(scope, receive, send)
        finally:
            request_id_var.reset(token)
