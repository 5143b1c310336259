"""`memory-layer keys create | list | revoke`: tenant-bound API keys."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

import typer

from memory_layer.auth import service
from memory_layer.cli.common import load_settings, print_json, transaction
from memory_layer.kit.db.database import open_database

app = typer.Typer(no_args_is_help=True)


@app.command(help="create a key for one tenant")
def create(
    tenant: Annotated[str, typer.Option(help="the tenant the key acts for")],
    name: Annotated[str, typer.Option(help="a label for the key")] = "default",
) -> None:
    async def run(url: str) -> dict[str, str]:
        async with transaction(url) as session:
            key, plaintext = await service.create_api_key(session, tenant, name)
        return {"id": str(key.id), "tenant_id": key.tenant_id, "name": key.name,
                "api_key": plaintext}

    with open_database(load_settings()) as database:
        print_json(asyncio.run(run(database.url)))
    typer.echo("Store this key now: it is shown only once.", err=True)


@app.command("list", help="list keys (never their secrets)")
def list_keys(tenant: Annotated[str | None, typer.Option(help="only this tenant")] = None) -> None:
    async def run(url: str) -> list[dict[str, object]]:
        async with transaction(url) as session:
            keys = await service.list_api_keys(session, tenant)
        return [
            {"id": str(k.id), "tenant_id": k.tenant_id, "name": k.name, "prefix": k.key_prefix,
             "created_at": k.created_at.isoformat(),
             "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None}
            for k in keys
        ]

    with open_database(load_settings()) as database:
        print_json(asyncio.run(run(database.url)))


@app.command(help="revoke a key by id")
def revoke(key_id: Annotated[uuid.UUID, typer.Argument(metavar="ID")]) -> None:
    async def run(url: str) -> bool:
        async with transaction(url) as session:
            return await service.revoke_api_key(session, key_id)

    with open_database(load_settings()) as database:
        print_json({"revoked": asyncio.run(run(database.url))})
