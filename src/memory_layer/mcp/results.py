"""Tool answers: JSON text plus structured content; failures as MCP tool errors (isError) that
carry the REST error code and detail, `{"error": "message_not_found", "detail": "..."}`."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel

from memory_layer.kit.errors import DomainError
from memory_layer.kit.http.errors import database_unreachable, error_body

logger = logging.getLogger(__name__)


def _result(body: dict[str, Any], *, is_error: bool = False) -> CallToolResult:
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=body, is_error=is_error
    )


def failure(code: str, detail: Any) -> CallToolResult:
    """A tool error with the REST error body."""
    return _result(error_body(code, detail), is_error=True)


def error_of(exc: Exception) -> dict[str, Any]:
    """The REST error body of an exception raised by a service (as the HTTP error handlers map
    it): a domain error's code, database_unavailable, else internal_error (logged)."""
    if isinstance(exc, DomainError):
        return error_body(exc.code, exc.detail)
    if database_unreachable(exc):
        logger.error("database unavailable during an MCP call: %s", exc)
        return error_body(
            "database_unavailable",
            "the database is unreachable; retry (writes with the same client_message_id)",
        )
    logger.exception("unhandled error in an MCP call", exc_info=exc)
    return error_body("internal_error", "an unexpected error occurred")


async def answer(work: Awaitable[BaseModel | dict[str, Any]]) -> CallToolResult:
    """Run a tool's work: its result as JSON, or its failure as a tool error."""
    try:
        result = await work
    except Exception as exc:
        return _result(error_of(exc), is_error=True)
    body = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
    return _result(body)


async def rest_coded_errors(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Server middleware: a tool error the SDK made itself (arguments that fail the tool's input
    schema, an unknown tool) carries the REST code of a request that fails its schema,
    validation_error, like the tools' own errors. The result is in its wire form here."""
    result = await call_next(ctx)
    if (
        ctx.method == "tools/call"
        and isinstance(result, dict)
        and result.get("isError")
        and "structuredContent" not in result
    ):
        detail = " ".join(
            str(block.get("text", "")) for block in result.get("content", []) if isinstance(block, dict)
        )
        coded = failure("validation_error", detail).model_dump(
            mode="json", by_alias=True, exclude_none=True, include={"content", "structured_content"}
        )
        return {**result, **coded}
    return result
