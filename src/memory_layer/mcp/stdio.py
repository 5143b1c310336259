"""stdio for desktop clients that start a command (`memory-layer mcp`), two ways.

On the database (the default): the process starts the application's clients as `serve` does
(the embedded PostgreSQL unless MEMORY_DATABASE_URL is set, the embedder, the embedding worker)
and serves the tools on them. It acts for the tenant of `--api-key` with that key's scopes, else
for `--tenant-id` with read and write (read only with `--read-only`): whoever starts it can reach
the database anyway.

Proxy (`--base-url`): a running service's /mcp, forwarded message by message with `--api-key`,
so the service's keys, scopes, walls and rate limits apply as to any HTTP client.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from starlette.datastructures import State

from memory_layer import __version__
from memory_layer.auth.service import DEFAULT_SCOPES, KeyRing, Principal, authenticate
from memory_layer.mcp.http import PATH
from memory_layer.mcp.runtime import Runtime, RuntimeLifespan
from memory_layer.mcp.server import NAME
from memory_layer.models.api_key import KeyScope

STDIO_LABEL = "mcp-stdio"


async def stdio_principal(
    state: State, *, api_key: str | None, tenant_id: str, read_only: bool
) -> Principal:
    """Who a database stdio server acts as: the key's principal (401 if it is not valid), else
    the operator for `tenant_id`."""
    if api_key is not None:
        key_ring: KeyRing = state.key_ring
        return await authenticate(state.read_sessionmaker, state.settings, key_ring, api_key)
    scopes = frozenset({KeyScope.read}) if read_only else DEFAULT_SCOPES
    return Principal(tenant_id=tenant_id, scopes=scopes, label=STDIO_LABEL)


def database_runtime(
    started: Callable[[], contextlib.AbstractAsyncContextManager[State]],
    *,
    api_key: str | None,
    tenant_id: str,
    read_only: bool,
) -> RuntimeLifespan:
    """The lifespan of a database stdio server: `started()` runs the application's lifespan
    and yields its state; the runtime acts as `stdio_principal` says."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[Runtime]:
        async with started() as state:
            principal = await stdio_principal(
                state, api_key=api_key, tenant_id=tenant_id, read_only=read_only
            )
            yield Runtime.of_app(state, principal)

    return lifespan


def endpoint_url(base_url: str) -> str:
    """The service's MCP endpoint: `base_url` + /mcp (unless it already ends so)."""
    base = base_url.rstrip("/")
    return base if base.endswith(PATH) else base + PATH


def _forward(method: Callable[..., Awaitable[Any]]) -> Callable[[Any, Any], Awaitable[Any]]:
    async def handler(_: Any, params: Any) -> Any:
        return await method(params)

    return handler


async def serve_proxy(base_url: str, api_key: str, *, timeout: float = 60.0) -> None:
    """Serve stdio by forwarding every request to the service's /mcp with the key."""
    headers = {"X-API-Key": api_key}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout) as http,
        streamable_http_client(endpoint_url(base_url), http_client=http) as (read, write),
        ClientSession(read, write) as remote,
    ):
        initialized = await remote.initialize()

        async def list_tools(params: Any) -> Any:
            return await remote.list_tools(params=params)

        async def call_tool(params: Any) -> Any:
            return await remote.call_tool(params.name, params.arguments)

        async def list_resources(params: Any) -> Any:
            return await remote.list_resources(params=params)

        async def list_templates(params: Any) -> Any:
            return await remote.list_resource_templates(params=params)

        async def read_resource(params: Any) -> Any:
            return await remote.read_resource(params.uri)

        async def list_prompts(params: Any) -> Any:
            return await remote.list_prompts(params=params)

        async def get_prompt(params: Any) -> Any:
            return await remote.get_prompt(params.name, params.arguments)

        server: Server[Any] = Server(
            NAME,
            version=__version__,
            instructions=initialized.instructions,
            on_list_tools=_forward(list_tools),
            on_call_tool=_forward(call_tool),
            on_list_resources=_forward(list_resources),
            on_list_resource_templates=_forward(list_templates),
            on_read_resource=_forward(read_resource),
            on_list_prompts=_forward(list_prompts),
            on_get_prompt=_forward(get_prompt),
        )
        async with stdio_server() as (stdin, stdout):
            await server.run(stdin, stdout, server.create_initialization_options())
