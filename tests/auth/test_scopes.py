"""Scoped keys: each route's scope, key management over HTTP, expiry, and the stored keys' migration."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.auth.service import create_api_key
from memory_layer.kit.db.engine import create_engine, create_sessionmaker
from memory_layer.kit.db.migrations import alembic_config
from memory_layer.models.api_key import KeyScope
from tests.fixtures.app import AppClient
from tests.fixtures.database import DatabaseServer
from tests.fixtures.messages import message_body, remember
from tests.fixtures.tenants import new_tenant, tenant_key


async def new_key(client: httpx.AsyncClient, **body: object) -> dict[str, object]:
    response = await client.post("/v1/admin/keys", json={"name": "test", **body})
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


def as_key(key: object) -> dict[str, str]:
    return {"X-API-Key": str(key)}


async def test_a_key_lacking_a_scope_gets_403_naming_it(client: AppClient, tenant: str) -> None:
    reader = (await new_key(client, tenant_id=tenant, scopes=["read"]))["api_key"]
    writer = (await new_key(client, tenant_id=tenant, scopes=["write"]))["api_key"]
    await remember(client, tenant, "the reader may find this")

    found = await client.get("/v1/memory/search", params={"query": "reader"}, headers=as_key(reader))
    assert found.status_code == 200
    refused = await client.post("/v1/messages", json=message_body(tenant), headers=as_key(reader))
    assert refused.status_code == 403
    assert refused.json()["error"] == "insufficient_scope"
    assert refused.json()["detail"]["required_scope"] == "write"

    stored = await client.post("/v1/messages", json=message_body(tenant), headers=as_key(writer))
    assert stored.status_code == 200
    blind = await client.get("/v1/memory/search", params={"query": "x"}, headers=as_key(writer))
    assert blind.status_code == 403
    assert blind.json()["detail"]["required_scope"] == "read"
    # Refused before the body is even looked at: nothing is stored by a refused write.
    history = await client.get(
        "/v1/conversations/conv-123/messages", params={"tenant_id": tenant}
    )
    assert len(history.json()["items"]) == 1

    admin_only = await client.get("/v1/admin/keys", headers=as_key(reader))
    assert admin_only.status_code == 403
    assert admin_only.json()["detail"]["required_scope"] == "admin"


async def test_keys_created_listed_and_revoked_over_http(client: AppClient, tenant: str) -> None:
    created = await new_key(client, tenant_id=tenant)
    assert created["scopes"] == ["read", "write"]
    assert str(created["api_key"]).startswith(str(created["key_prefix"]))
    second = await new_key(client, tenant_id=tenant, name="second")

    first_page = await client.get("/v1/admin/keys", params={"tenant_id": tenant, "limit": 1})
    assert first_page.status_code == 200
    page = first_page.json()
    assert [item["id"] for item in page["items"]] == [second["id"]]
    rest = await client.get(
        "/v1/admin/keys", params={"tenant_id": tenant, "limit": 1, "cursor": page["next_cursor"]}
    )
    assert [item["id"] for item in rest.json()["items"]] == [created["id"]]
    assert rest.json()["next_cursor"] is None
    listing = first_page.text + rest.text
    assert str(created["api_key"]) not in listing
    assert "hash" not in listing
    assert "api_key" not in listing

    works = await client.get("/v1/stats", headers=as_key(created["api_key"]))
    assert works.status_code == 200
    revoked = await client.delete(f"/v1/admin/keys/{created['id']}")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    refused = await client.get("/v1/stats", headers=as_key(created["api_key"]))
    assert refused.status_code == 401
    again = await client.delete(f"/v1/admin/keys/{created['id']}")
    assert again.status_code == 404
    assert again.json()["error"] == "key_not_found"
    listed = await client.get("/v1/admin/keys", params={"tenant_id": tenant})
    assert [item["id"] for item in listed.json()["items"]] == [second["id"]]
    with_revoked = await client.get(
        "/v1/admin/keys", params={"tenant_id": tenant, "include_revoked": "true"}
    )
    assert len(with_revoked.json()["items"]) == 2


async def test_key_routes_are_walled_from_tenant_keys(
    client: AppClient, db_engine: AsyncEngine
) -> None:
    mine, theirs = new_tenant(), new_tenant()
    my_key, their_key = await tenant_key(db_engine, mine), await tenant_key(db_engine, theirs)
    target = await new_key(client, tenant_id=theirs)
    for key in (my_key, their_key):
        listing = await client.get("/v1/admin/keys", headers=as_key(key))
        create = await client.post(
            "/v1/admin/keys", json={"name": "x", "tenant_id": mine}, headers=as_key(key)
        )
        revoke = await client.delete(f"/v1/admin/keys/{target['id']}", headers=as_key(key))
        assert listing.status_code == create.status_code == revoke.status_code == 403
    still = await client.get("/v1/stats", headers=as_key(target["api_key"]))
    assert still.status_code == 200


async def test_an_unbound_admin_key_has_every_right_a_bound_one_cannot(
    client: AppClient, tenant: str
) -> None:
    admin = await new_key(client, scopes=["admin", "read"])
    assert admin["tenant_id"] is None
    headers = as_key(admin["api_key"])
    assert (await client.get("/v1/admin/keys", headers=headers)).status_code == 200
    # An unbound key names its tenant per request, as the configured keys do.
    stats = await client.get("/v1/stats", params={"tenant_id": tenant}, headers=headers)
    assert stats.status_code == 200
    write = await client.post("/v1/messages", json=message_body(tenant), headers=headers)
    assert write.status_code == 403

    bound = await client.post(
        "/v1/admin/keys", json={"name": "x", "tenant_id": tenant, "scopes": ["admin"]}
    )
    assert bound.status_code == 422
    assert bound.json()["error"] == "invalid_scopes"
    bad_bodies: list[dict[str, object]] = [
        {"scopes": []}, {"scopes": ["root"]}, {"expires_at": "2020-01-01T00:00:00Z"}
    ]
    for bad in bad_bodies:
        response = await client.post("/v1/admin/keys", json={"name": "x", **bad})
        assert response.status_code == 422, bad


async def test_an_expired_key_is_refused(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    async with create_sessionmaker(db_engine).begin() as session:
        _, expired = await create_api_key(
            session, tenant, "old", expires_at=datetime.now(UTC) - timedelta(seconds=1)
        )
        _, current = await create_api_key(
            session, tenant, "new", expires_at=datetime.now(UTC) + timedelta(days=1)
        )
    refused = await client.get("/v1/stats", headers=as_key(expired))
    assert refused.status_code == 401
    assert refused.json()["error"] == "expired_api_key"
    assert (await client.get("/v1/stats", headers=as_key(current))).status_code == 200


async def test_stored_keys_keep_read_and_write_through_the_migration(
    db_server: DatabaseServer,
) -> None:
    url = db_server.create_database("memory_layer_keys_migration")
    config = alembic_config(url, 384)
    await asyncio.to_thread(command.upgrade, config, "0003")
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO api_keys (tenant_id, id, name, key_prefix, key_hash) "
                    "VALUES ('acme', :id, 'old', 'mlk_abc', :hash)"
                ),
                {"id": uuid.uuid4(), "hash": "a" * 64},
            )
        await asyncio.to_thread(command.upgrade, config, "head")
        async with engine.connect() as connection:
            row = (
                await connection.execute(text("SELECT tenant_id, scopes, expires_at FROM api_keys"))
            ).one()
        assert row.tenant_id == "acme"
        assert row.scopes == [KeyScope.read.value, KeyScope.write.value]
        assert row.expires_at is None
    finally:
        await engine.dispose()
