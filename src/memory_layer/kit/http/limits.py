"""Refuse bodies larger than any valid request, with the usual JSON error body (413).

A declared Content-Length is checked before anything is read. A chunked body is read up to the
limit and refused past it, so nothing of such a request reaches a route; except on streamed
paths (an import of a whole tenant), whose bodies pass through as they arrive while the bytes
are counted: past the limit, the route's next read raises `PayloadTooLarge`.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memory_layer.kit.errors import PayloadTooLarge
from memory_layer.kit.http.errors import error_body

DEFAULT_REASON = "a limit derived from MEMORY_MAX_CONTENT_CHARS and MEMORY_MAX_METADATA_BYTES"


@dataclass(frozen=True)
class PathLimit:
    """The limit of one path: `streamed` paths are counted, not buffered; `reason` goes into the
    413's detail (the setting behind the limit)."""

    max_bytes: int
    streamed: bool = False
    reason: str = DEFAULT_REASON


class BodySizeLimitMiddleware:
    """`max_body_bytes` for every path, except the paths in `overrides` (path -> bytes or a
    PathLimit), which take bodies of many messages (a batch, an import)."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        overrides: dict[str, int | PathLimit] | None = None,
    ) -> None:
        self.app = app
        self.default = PathLimit(max_body_bytes)
        self.overrides = {
            path: limit if isinstance(limit, PathLimit) else PathLimit(limit)
            for path, limit in (overrides or {}).items()
        }

    @staticmethod
    def _detail(limit: PathLimit) -> str:
        return f"the request body exceeds {limit.max_bytes} bytes ({limit.reason})"

    def _refusal(self, limit: PathLimit) -> JSONResponse:
        return JSONResponse(
            status_code=413, content=error_body("payload_too_large", self._detail(limit))
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.overrides.get(scope.get("path", ""), self.default)
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit.max_bytes:
                await self._refusal(limit)(scope, receive, send)
                return

        if limit.streamed:
            await self._pass_counted(limit, scope, receive, send)
            return

        if not any(name == b"content-length" for name, _ in scope.get("headers", ())):
            # Chunked: read it here (routes read whole bodies anyway) and refuse it past the limit.
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit.max_bytes:
                    await self._refusal(limit)(scope, receive, send)
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
            return
        await self.app(scope, receive, send)

    async def _pass_counted(self, limit: PathLimit, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand the body on chunk by chunk (memory stays flat), counting; raise past the limit.

        The route sees `PayloadTooLarge` from its read and may answer with what it did so far
        (an import names the lines it stored); a route that lets it escape gets the plain 413.
        """
        size = 0
        started = False

        async def counted() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit.max_bytes:
                    raise PayloadTooLarge(self._detail(limit))
            return message

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watch)
        except PayloadTooLarge:
            if started:
                raise
            await self._refusal(limit)(scope, receive, send)
