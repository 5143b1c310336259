"""`memory-layer keys create | list | revoke`: stored API keys with scopes, tenant and expiry."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from memory_layer.auth import service
from memory_layer.cli.common import load_settings, print_json, transaction
from memory_layer.kit.db.database import open_database
from memory_layer.kit.errors import DomainError
from memory_layer.models.api_key import ApiKey, KeyScope

app = typer.Typer(no_args_is_help=True)


def _describe(key: ApiKey) -> dict[str, object]:
    return {
        "id": str(key.id),
        "tenant_id": key.tenant_id,
        "name": key.name,
        "scopes": list(key.scopes),
        "prefix": key.key_prefix,
        "created_at": key.created_at.isoformat(),
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def _expiry(expires_at: datetime | None, expires_in_days: float | None) -> datetime | None:
    if expires_at is not None and expires_in_days is not None:
        raise typer.BadParameter("give --expires-at or --expires-in-days, not both")
    if expires_in_days is not None:
        return datetime.now(UTC) + timedelta(days=expires_in_days)
    if expires_at is not None and expires_at.tzinfo is None:
        return expires_at.replace(tzinfo=UTC)  # a time without a zone is read as UTC
    return expires_at


@app.command(help="create a key (shown once); bound to --tenant, or to none with --any-tenant")
def create(
    tenant: Annotated[str | None, typer.Option(help="the tenant the key acts for")] = None,
    any_tenant: Annotated[
        bool, typer.Option("--any-tenant", help="bind the key to no tenant (it names one per request)")
    ] = False,
    name: Annotated[str, typer.Option(help="a label for the key")] = "default",
    scope: Annotated[
        list[KeyScope] | None,
        typer.Option(help="a scope (repeat for several); default: read and write"),
    ] = None,
    expires_at: Annotated[
        datetime | None, typer.Option(help="refuse the key from this time (UTC unless a zone is given)")
    ] = None,
    expires_in_days: Annotated[
        float | None, typer.Option(min=0, help="refuse the key after this many days")
    ] = None,
) -> None:
    if (tenant is None) == (not any_tenant):
        raise typer.BadParameter("give --tenant T, or --any-tenant for a key bound to no tenant")
    scopes = frozenset(scope) if scope else service.DEFAULT_SCOPES
    expiry = _expiry(expires_at, expires_in_days)

    async def run(url: str) -> dict[str, object]:
        async with transaction(url) as session:
            key, plaintext = await service.create_api_key(
                session, tenant, name, scopes=scopes, expires_at=expiry
            )
        return {**_describe(key), "api_key": plaintext}

    with open_database(load_settings()) as database:
        try:
            created = asyncio.run(run(database.url))
        except DomainError as exc:  # e.g. admin on a tenant-bound key
            typer.echo(f"error: {exc.code}: {exc.detail}", err=True)
            raise typer.Exit(2) from None
        print_json(created)
    typer.echo("Store this key now: it is shown only once.", err=True)


@app.command("list", help="list keys (never their secrets)")
def list_keys(tenant: Annotated[str | None, typer.Option(help="only this tenant")] = None) -> None:
    async def run(url: str) -> list[dict[str, object]]:
        async with transaction(url) as session:
            keys = await service.list_api_keys(session, tenant)
        return [_describe(k) for k in keys]

    with open_database(load_settings()) as database:
        print_json(asyncio.run(run(database.url)))


@app.command(help="revoke a key by id")
def revoke(key_id: Annotated[uuid.UUID, typer.Argument(metavar="ID")]) -> None:
    async def run(url: str) -> bool:
        async with transaction(url) as session:
            return await service.revoke_api_key(session, key_id) is not None

    with open_database(load_settings()) as database:
        print_json({"revoked": asyncio.run(run(database.url))})
