"""Streamable HTTP at /mcp: the same API keys, scopes, tenant walls and rate limits as REST.

Every request to /mcp is authenticated before the SDK sees it: the key comes from `X-API-Key`
or, for clients that can only send that, `Authorization: Bearer <key>`; a request without a
valid key is answered 401 like any route. The key's principal rides on the request's state to
the tools, which check its scope and tenant per call. The tenant rate limit counts each request
(each JSON-RPC message is one POST); the global limit is the application's middleware, which
/mcp passes through like every route.

Stateless, JSON responses: no MCP session lives in a process between requests, so any replica
answers any request and a session can never be taken over with another key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from memory_layer.auth.deps import get_principal
from memory_layer.config import Settings
from memory_layer.mcp.runtime import PRINCIPAL
from memory_layer.ratelimit.deps import enforce_tenant_limit

PATH = "/mcp"


def presented_key(request: Request) -> str | None:
    """The API key of the request: X-API-Key, else the token of `Authorization: Bearer`."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


@contextlib.asynccontextmanager
async def serving(server: MCPServer[Any], settings: Settings) -> AsyncIterator[StreamableHTTPSessionManager]:
    """The SDK's session manager for `server`, running (enter it in the application's lifespan).

    The manager holds an anyio task group, which must end in the task that started it: it runs
    in a task of its own, so the lifespan may be entered and left by different tasks (as test
    fixtures do) and the manager still stops cleanly.
    """
    server.streamable_http_app(
        streamable_http_path=PATH,
        stateless_http=True,
        json_response=True,
        max_request_body_size=settings.max_body_bytes,
        # Host and Origin are the application's business (its CORS settings), as for every route;
        # the SDK's check would refuse any host but localhost.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    manager = server.session_manager
    running, stop = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with manager.run():
            running.set()
            await stop.wait()

    task = asyncio.create_task(run(), name="mcp-session-manager")
    started = asyncio.create_task(running.wait())
    await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():  # it failed to start: its error
        started.cancel()
        task.result()
    try:
        yield manager
    finally:
        stop.set()
        await task


class McpEndpoint:
    """The ASGI app at /mcp: authentication and the tenant limit, then the SDK."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        # A refusal (401, 403, 429) or a database failure is raised before the SDK runs: the
        # application's error handlers answer it, with the same bodies as for a route.
        principal = await get_principal(request, presented_key(request))
        await enforce_tenant_limit(request, principal)
        setattr(request.state, PRINCIPAL, principal)
        manager: StreamableHTTPSessionManager = request.app.state.mcp_sessions
        await manager.handle_request(scope, receive, send)


def route() -> Route:
    """The application's route to /mcp (every method: the SDK answers those it does not serve)."""
    return Route(PATH, McpEndpoint(), include_in_schema=False)
