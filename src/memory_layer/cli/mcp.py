"""`memory-layer mcp`: the MCP server over stdio, for desktop clients that start a command."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, NoReturn, TypeVar

import anyio
import typer
from mcp.shared.exceptions import MCPError
from starlette.datastructures import State

from memory_layer.cli.common import load_settings
from memory_layer.config import Settings, check_startup_settings
from memory_layer.kit.errors import DomainError
from memory_layer.kit.schemas import IDENTIFIER_PATTERN
from memory_layer.mcp.server import build_server
from memory_layer.mcp.stdio import database_runtime, serve_proxy

DEFAULT_TENANT = "default"
E = TypeVar("E", bound=Exception)


def _started_app(settings: Settings) -> contextlib.AbstractAsyncContextManager[State]:
    """The application's clients, started as `serve` starts them (no HTTP listener)."""
    from memory_layer.app import create_app

    @contextlib.asynccontextmanager
    async def started() -> AsyncIterator[State]:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            yield app.state

    return started()


def mcp(
    tenant_id: Annotated[
        str,
        typer.Option(help="the tenant to act for on the database (without --api-key)"),
    ] = DEFAULT_TENANT,
    api_key: Annotated[
        str | None,
        typer.Option(help="act as this API key (its tenant and scopes); required with --base-url"),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="forward to a running service's /mcp (e.g. http://127.0.0.1:8000)"),
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="on the database: no remember, forget or set_state")
    ] = False,
) -> None:
    """Serve the MCP tools over stdio: on the database (embedded PostgreSQL unless
    MEMORY_DATABASE_URL is set), or forwarded to a running service with --base-url."""
    if base_url is not None:
        if api_key is None:
            _usage("--base-url needs --api-key")
        key = api_key
        _run(lambda: serve_proxy(base_url, key))
        return
    if not re.fullmatch(IDENTIFIER_PATTERN, tenant_id):
        _usage(f"--tenant-id must match {IDENTIFIER_PATTERN}")
    settings = load_settings()
    check_startup_settings(settings)
    lifespan = database_runtime(
        lambda: _started_app(settings), api_key=api_key, tenant_id=tenant_id, read_only=read_only
    )
    _run(build_server(lifespan).run_stdio_async)


def _usage(problem: str) -> NoReturn:
    typer.echo(f"memory-layer mcp: {problem}", err=True)
    raise typer.Exit(2)


def _run(serve: Callable[[], Awaitable[None]]) -> None:
    """Serve until stdin closes; a refused key (here, or by the service) exits 2 with one line."""
    try:
        anyio.run(serve)
    except* DomainError as refused:
        error = _first(refused)
        typer.echo(f"memory-layer mcp: {error.code}: {error.detail}", err=True)
        raise typer.Exit(2) from None
    except* MCPError as refused:
        typer.echo(f"memory-layer mcp: the service refused: {_first(refused)}", err=True)
        raise typer.Exit(2) from None


def _first(group: BaseExceptionGroup[E]) -> E:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
