"""One place that turns errors into `{"error": code, "detail": ...}` bodies."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from memory_layer.kit.errors import DomainError

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "malformed_body", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"
}


def error_body(code: str, detail: Any) -> dict[str, Any]:
    return {"error": code, "detail": detail}


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return JSONResponse(status_code=exc.status_code, content=error_body(exc.code, exc.detail))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in exc.errors()
    ]
    return JSONResponse(status_code=422, content=error_body("validation_error", details))


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path: Starlette names only the first route's (a
    GET and a POST route on one path would answer `Allow: GET` alone)."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    ]


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    return JSONResponse(
        status_code=exc.status_code, content=error_body(code, exc.detail), headers=headers or None
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    logger.error("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        status_code=503,
        content=error_body(
            "database_unavailable",
            "the database is unreachable; retry (writes with the same client_message_id)",
        ),
        headers={"Retry-After": "1"},
    )


# SQLSTATEs of a server that is gone or going: connection exceptions (class 08), and an
# administrator or crash shutdown, or a server still starting (57P01-57P03).
_UNREACHABLE_STATES = ("08", "57P01", "57P02", "57P03")


def database_unreachable(exc: BaseException) -> bool:
    """Does this error mean the database cannot be reached now (a retry may succeed)?"""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        state = getattr(exc.orig, "sqlstate", None) or ""
        return exc.connection_invalidated or state.startswith(_UNREACHABLE_STATES)
    # The driver's connect fails with the socket's own error (refused, no such socket file)
    # while the server is down; no route does other socket or file I/O.
    return isinstance(exc, OSError)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    if database_unreachable(exc):
        return await _database_unavailable(request, exc)
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        status_code=500, content=error_body("internal_error", "an unexpected error occurred")
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
    # Every pooled connection busy for MEMORY_DB_POOL_TIMEOUT_SECONDS: overloaded, so retry later.
    app.add_exception_handler(PoolTimeoutError, _database_unavailable)
    # Other driver errors of a server that is down or restarting (by SQLSTATE), and the socket
    # errors of connecting to it, are sorted out from the real 500s here.
    app.add_exception_handler(DBAPIError, _unexpected_error)
    app.add_exception_handler(OSError, _unexpected_error)
    app.add_exception_handler(Exception, _unexpected_error)
