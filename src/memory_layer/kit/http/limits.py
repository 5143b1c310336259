"""Refuse bodies larger than any valid request, with the usual JSON error body (413).

A declared Content-Length is checked before anything is read; a chunked body is read up to the
limit and refused past it. Nothing of such a request reaches a route.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memory_layer.kit.http.errors import error_body


class BodySizeLimitMiddleware:
    """`max_body_bytes` for every path, except the paths in `overrides` (path -> bytes), which
    take bodies of many messages (a batch, an import)."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, overrides: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.overrides = overrides or {}

    def _refusal(self, limit: int) -> JSONResponse:
        return JSONResponse(
            status_code=413,
            content=error_body(
                "payload_too_large",
                f"the request body exceeds {limit} bytes (a limit derived from "
                "MEMORY_MAX_CONTENT_CHARS and MEMORY_MAX_METADATA_BYTES)",
            ),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.overrides.get(scope.get("path", ""), self.max_body_bytes)
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._refusal(limit)(scope, receive, send)
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
                if size > limit:
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
