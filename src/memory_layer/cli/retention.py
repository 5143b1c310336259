"""`memory-layer retention run`: what POST /v1/admin/retention/run does, without HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Annotated

import typer

from memory_layer.audit import service as audit
from memory_layer.cli.common import load_settings, print_json, transaction
from memory_layer.config import Settings
from memory_layer.kit.db.database import open_database
from memory_layer.retention.service import RetentionParams, RetentionReport, run_retention

app = typer.Typer(no_args_is_help=True)


@app.command(help="archive or delete per tenant policy, delete expired messages")
def run(
    tenant: Annotated[str | None, typer.Option(help="only this tenant")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only count")] = False,
) -> None:
    async def go(url: str, settings: Settings) -> RetentionReport:
        async with transaction(url, settings) as session:
            params = RetentionParams(tenant_id=tenant, dry_run=dry_run)
            return await run_retention(session, params, settings=settings, actor=audit.CLI)

    settings = load_settings()
    with open_database(settings) as database:
        report = asyncio.run(go(database.url, settings))
    print_json(dataclasses.asdict(report))
