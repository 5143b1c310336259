"""The long-running commands (serve, worker) and migrate."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from memory_layer.cli.common import load_settings
from memory_layer.config import check_startup_settings
from memory_layer.kit.db.database import open_database


def serve(
    host: Annotated[str | None, typer.Option(help="bind address (MEMORY_HOST, default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (MEMORY_PORT, default 8000)")] = None,
) -> None:
    """Run the HTTP service (embedded PostgreSQL unless MEMORY_DATABASE_URL is set)."""
    import uvicorn

    from memory_layer.app import create_app

    updates: dict[str, object] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    settings = load_settings(**updates)
    check_startup_settings(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # Logging is ours (kit/observability/logging.py), access lines included.
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def worker(
    metrics_port: Annotated[
        int | None, typer.Option(help="serve Prometheus /metrics on this port")
    ] = None,
    drain: Annotated[bool, typer.Option("--drain", help="exit once nothing is due")] = False,
) -> int:
    """Run the embedding worker as its own process."""
    from memory_layer.embeddings.standalone import run_worker

    settings = load_settings()
    check_startup_settings(settings)
    with open_database(settings) as database:
        return asyncio.run(
            run_worker(database.url, settings, metrics_port=metrics_port, drain=drain)
        )


def migrate() -> None:
    """Apply database migrations up to head."""
    with open_database(load_settings(), migrate=True):
        pass
    typer.echo("database schema is at head")
