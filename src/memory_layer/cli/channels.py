"""`memory-layer channels apply | export | schema`, and `keys rotate-encryption`."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from memory_layer.audit.service import CLI
from memory_layer.channels import document
from memory_layer.channels import service as channels
from memory_layer.channels.schemas import document_schema
from memory_layer.cli.common import load_settings, print_json, transaction
from memory_layer.kit.db.database import open_database
from memory_layer.kit.errors import DomainError

app = typer.Typer(no_args_is_help=True)


def _read(path: str) -> str:
    return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")


@app.command(help="register (or replace) the channels FILE.yaml declares for --tenant")
def apply(
    file: Annotated[str, typer.Argument(metavar="FILE.yaml", help="the channels file; - for stdin")],
    tenant: Annotated[str, typer.Option(help="the tenant whose channels these are")],
    prune: Annotated[
        bool, typer.Option("--prune", help="also delete the tenant's channels the file omits")
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="only validate the file; change nothing")
    ] = False,
) -> None:
    try:
        declared = document.load(_read(file), source=file)
    except document.DocumentError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2) from None
    if check:
        print_json({"valid": True, "channels": sorted(declared)})
        return
    settings = load_settings()

    async def run(url: str) -> dict[str, list[str]]:
        async with transaction(url, settings) as session:
            for name, fields in declared.items():
                await channels.put_channel(session, tenant, name, fields.settings(), actor=CLI)
            deleted = []
            if prune:
                for channel in await channels.all_channels(session, tenant):
                    if channel.name not in declared:
                        await channels.delete_channel(session, tenant, channel.name, actor=CLI)
                        deleted.append(channel.name)
        return {"applied": sorted(declared), "deleted": deleted}

    with open_database(settings) as database:
        try:
            print_json(asyncio.run(run(database.url)))
        except DomainError as exc:
            typer.echo(f"error: {exc.code}: {exc.detail}", err=True)
            raise typer.Exit(2) from None


@app.command("export", help="print --tenant's channels as the YAML `apply` reads")
def export(tenant: Annotated[str, typer.Option(help="the tenant")]) -> None:
    settings = load_settings()

    async def run(url: str) -> str:
        async with transaction(url, settings) as session:
            return document.dump(await channels.all_channels(session, tenant))

    with open_database(settings) as database:
        typer.echo(asyncio.run(run(database.url)), nl=False)


@app.command(help="print the JSON Schema of the channels file (its documentation); with a FILE, "
             "validate it")
def schema(
    file: Annotated[
        str | None, typer.Argument(metavar="[FILE.yaml]", help="a channels file to validate")
    ] = None,
) -> None:
    if file is None:
        typer.echo(json.dumps(document_schema(), indent=2))
        return
    try:
        declared = document.load(_read(file), source=file)
    except document.DocumentError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2) from None
    print_json({"valid": True, "channels": sorted(declared)})


def rotate_encryption(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's messages")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="messages per transaction")] = 500,
) -> None:
    """Re-encrypt every encrypted message with the newest key of MEMORY_ENCRYPTION_KEYS."""
    settings = load_settings()
    ring = settings.keyring()
    if ring.empty:
        typer.echo("error: MEMORY_ENCRYPTION_KEYS is unset: nothing to encrypt with", err=True)
        raise typer.Exit(2)

    def show(progress: channels.RotationProgress) -> None:
        typer.echo(
            f"re-encrypted {progress.done}, {progress.remaining} left (key {ring.current})",
            err=True,
        )

    async def run(url: str) -> int:
        from memory_layer.kit.crypto import SESSION_KEYRING
        from memory_layer.kit.db.engine import create_engine, create_sessionmaker

        engine = create_engine(url, pool_size=1, max_overflow=0)
        try:
            return await channels.rotate_encryption(
                create_sessionmaker(engine, {SESSION_KEYRING: ring}), ring,
                tenant_id=tenant, batch_size=batch_size, progress=show,
            )
        finally:
            await engine.dispose()

    with open_database(settings) as database:
        done = asyncio.run(run(database.url))
    print_json({"reencrypted": done, "key_id": ring.current})
