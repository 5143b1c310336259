"""MCP clients of the SDK against the application in-process (streamable HTTP over ASGI)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from fastapi import FastAPI
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

BASE = "http://memory.test"


def key_headers(key: str | None, *, bearer: bool = False) -> dict[str, str]:
    if key is None:
        return {}
    return {"Authorization": f"Bearer {key}"} if bearer else {"X-API-Key": key}


@asynccontextmanager
async def mcp_client(app: FastAPI, key: str | None, *, bearer: bool = False) -> AsyncIterator[ClientSession]:
    """An initialized SDK client session on the app's /mcp, calling with `key`."""
    async with (
        httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url=BASE, headers=key_headers(key, bearer=bearer)
        ) as http,
        streamable_http_client(f"{BASE}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def body(result: CallToolResult) -> dict[str, Any]:
    """A tool result's JSON (its text content, which carries the same as structured_content)."""
    [content] = result.content
    assert isinstance(content, TextContent)
    parsed: dict[str, Any] = json.loads(content.text)
    assert result.structured_content == parsed
    return parsed


def ok(result: CallToolResult) -> dict[str, Any]:
    parsed = body(result)
    assert not result.is_error, parsed
    return parsed


def error(result: CallToolResult) -> str:
    """The REST error code of a failed tool call."""
    parsed = body(result)
    assert result.is_error, parsed
    code: str = parsed["error"]
    return code
