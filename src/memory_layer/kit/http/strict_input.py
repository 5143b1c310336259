"""Read every query string and JSON request body strictly before a route parses it.

A JSON body with a repeated key, a non-finite number, nesting past the limit, invalid UTF-8 or
broken syntax (kit/strict_json.py), and a query string naming a parameter twice, are answered with
the 422 `validation_error` body of any other invalid field: no route acts on a request its client
did not mean (`{"tenant_id": "a", "tenant_id": "b"}`, `?tenant_id=a&tenant_id=b`). No route takes
a list in its query string; one that does must take its parameter out of this check.
"""

from __future__ import annotations

from email.message import Message as MimeMessage
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memory_layer.kit import strict_json
from memory_layer.kit.http.errors import error_body

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def is_json(content_type: str | None) -> bool:
    """What FastAPI parses as JSON: no content type, application/json or application/*+json."""
    if not content_type:
        return True
    mime = MimeMessage()
    mime["content-type"] = content_type
    subtype = mime.get_content_subtype()
    return mime.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _repeated_parameter(query_string: bytes) -> str | None:
    seen: set[str] = set()
    for name, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in seen:
            return name
        seen.add(name)
    return None


def _refuse(loc: list[str], message: str, kind: str) -> JSONResponse:
    detail = [{"loc": loc, "msg": message, "type": kind}]
    return JSONResponse(status_code=422, content=error_body("validation_error", detail))


class StrictInputMiddleware:
    """Checks JSON bodies; must sit inside BodySizeLimitMiddleware, which bounds what it buffers."""

    def __init__(self, app: ASGIApp, streamed_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        # Paths whose bodies are read as they stream in (an import), never buffered here.
        self.streamed_paths = streamed_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        repeated = _repeated_parameter(scope.get("query_string", b""))
        if repeated is not None:
            reason = f"the query parameter {repeated!r} is given more than once"
            await _refuse(["query", repeated], reason, "repeated_parameter")(scope, receive, send)
            return
        if scope["method"] not in _BODY_METHODS or scope.get("path", "") in self.streamed_paths:
            await self.app(scope, receive, send)
            return
        content_type = next(
            (value.decode("latin-1") for name, value in scope["headers"] if name == b"content-type"),
            None,
        )
        if not is_json(content_type):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            try:
                strict_json.loads(body)
            except strict_json.JSONTextError as exc:
                await _refuse(["body"], exc.message, exc.kind)(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
