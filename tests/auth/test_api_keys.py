"""API keys: tenant walls, admin rights, hashing at rest, open development mode."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import cast

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from memory_layer.auth.repository import ApiKeyRepository
from memory_layer.auth.service import KeyRing, authenticate, create_api_key
from memory_layer.config import Settings
from memory_layer.kit.db.engine import create_engine, create_sessionmaker
from memory_layer.kit.db.migrations import upgrade_to_head
from memory_layer.kit.errors import Unauthenticated
from tests.fixtures.app import make_settings, running_client
from tests.fixtures.database import DatabaseServer
from tests.fixtures.tenants import new_tenant

SERVICE_KEY = "service-key-for-tests"
ADMIN_KEY = "admin-key-for-tests"


@pytest.fixture
async def secured(settings_factory: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_factory(api_keys=SERVICE_KEY, admin_api_keys=ADMIN_KEY)
    async with running_client(settings) as client:
        yield client


async def make_key(engine: AsyncEngine, tenant: str) -> tuple[str, str]:
    async with create_sessionmaker(engine).begin() as session:
        key, plaintext = await create_api_key(session, tenant, "test")
    return str(key.id), plaintext


def msg(tenant: str | None, content: str = "I love Python programming") -> dict[str, object]:
    body: dict[str, object] = {"conversation_id": "c", "role": "user", "content": content}
    if tenant is not None:
        body["tenant_id"] = tenant
    return body


async def test_missing_and_wrong_keys_are_401(secured: httpx.AsyncClient, tenant: str) -> None:
    missing = await secured.post("/v1/messages", json=msg(tenant))
    wrong = await secured.post("/v1/messages", json=msg(tenant), headers={"X-API-Key": "nope"})
    forged = await secured.post(
        "/v1/messages", json=msg(tenant), headers={"X-API-Key": "mlk_" + "a" * 43}
    )
    assert missing.status_code == 401
    assert missing.json()["error"] == "missing_api_key"
    assert wrong.status_code == forged.status_code == 401
    assert wrong.json()["error"] == "invalid_api_key"
    search = await secured.get("/v1/memory/search", params={"tenant_id": tenant, "query": "x"})
    assert search.status_code == 401


async def test_service_key_acts_for_any_tenant(secured: httpx.AsyncClient) -> None:
    headers = {"X-API-Key": SERVICE_KEY}
    for tenant in (new_tenant(), new_tenant()):
        response = await secured.post("/v1/messages", json=msg(tenant), headers=headers)
        assert response.status_code == 200
        assert response.json()["tenant_id"] == tenant


async def test_tenant_key_cannot_touch_another_tenant(
    secured: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    mine, theirs = new_tenant(), new_tenant()
    _, key = await make_key(db_engine, mine)
    admin = {"X-API-Key": SERVICE_KEY}
    their_message = (
        await secured.post("/v1/messages", json=msg(theirs, "secret of theirs"), headers=admin)
    ).json()
    headers = {"X-API-Key": key}

    write = await secured.post("/v1/messages", json=msg(theirs), headers=headers)
    search_get = await secured.get(
        "/v1/memory/search", params={"tenant_id": theirs, "query": "secret"}, headers=headers
    )
    search_post = await secured.post(
        "/v1/memory/search", json={"tenant_id": theirs, "query": "secret"}, headers=headers
    )
    read = await secured.get(
        f"/v1/messages/{their_message['message_id']}", params={"tenant_id": theirs},
        headers=headers,
    )
    for response in (write, search_get, search_post, read):
        assert response.status_code == 403, response.text
        assert response.json()["error"] == "tenant_mismatch"

    # Without a tenant_id the key acts for its own tenant, and sees nothing of the other.
    own = await secured.post("/v1/messages", json=msg(None, "my own note"), headers=headers)
    assert own.status_code == 200
    assert own.json()["tenant_id"] == mine
    hits = await secured.post("/v1/memory/search", json={"query": "secret"}, headers=headers)
    assert [item["content"] for item in hits.json()["items"]] == ["my own note"]
    hidden = await secured.get(
        f"/v1/messages/{their_message['message_id']}", headers=headers
    )
    assert hidden.status_code == 404


async def test_admin_routes_need_an_admin_key(
    secured: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    _, tenant_key = await make_key(db_engine, tenant)
    body = {"dry_run": True, "tenant_id": tenant}
    for key in (SERVICE_KEY, tenant_key):
        response = await secured.post(
            "/v1/admin/retention/run", json=body, headers={"X-API-Key": key}
        )
        assert response.status_code == 403
        assert response.json()["error"] == "insufficient_scope"
    allowed = await secured.post(
        "/v1/admin/retention/run", json=body, headers={"X-API-Key": ADMIN_KEY}
    )
    assert allowed.status_code == 200
    # admin keys may also act for any tenant
    write = await secured.post("/v1/messages", json=msg(tenant), headers={"X-API-Key": ADMIN_KEY})
    assert write.status_code == 200


async def test_keys_are_stored_hashed_and_revocable(
    secured: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    key_id, key = await make_key(db_engine, tenant)
    async with db_engine.connect() as connection:
        stored = (
            await connection.execute(
                text("SELECT key_hash, key_prefix FROM api_keys WHERE id = :id"), {"id": key_id}
            )
        ).one()
        leaked = (
            await connection.execute(
                text("SELECT count(*) FROM api_keys WHERE key_hash = :k OR name = :k"), {"k": key}
            )
        ).scalar_one()
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key.startswith(stored.key_prefix)
    assert len(stored.key_prefix) < len(key) // 3
    assert leaked == 0

    ok = await secured.post("/v1/messages", json=msg(tenant), headers={"X-API-Key": key})
    assert ok.status_code == 200
    async with create_sessionmaker(db_engine).begin() as session:
        import uuid

        assert await ApiKeyRepository(session).revoke(uuid.UUID(key_id)) is not None
    revoked = await secured.post("/v1/messages", json=msg(tenant), headers={"X-API-Key": key})
    assert revoked.status_code == 401


async def test_open_development_mode_closes_with_the_first_tenant_key(
    db_server: DatabaseServer,
) -> None:
    url = db_server.create_database("memory_layer_open")
    await asyncio.to_thread(upgrade_to_head, url, 384)
    settings = make_settings(url, api_keys=[], admin_api_keys=[])
    engine = create_engine(url, pool_size=1, max_overflow=0)
    mine, theirs = new_tenant(), new_tenant()
    try:
        async with running_client(settings) as client:
            anonymous = await client.post("/v1/messages", json=msg(theirs))
            assert anonymous.status_code == 200
            retention = await client.post("/v1/admin/retention/run", json={"dry_run": True})
            assert retention.status_code == 200

            _, key = await make_key(engine, mine)
            closed = await client.post("/v1/messages", json=msg(theirs))
            assert closed.status_code == 401
            assert closed.json()["error"] == "missing_api_key"
            walled = await client.post("/v1/messages", json=msg(theirs), headers={"X-API-Key": key})
            assert walled.status_code == 403
            bad = await client.post("/v1/messages", json=msg(theirs), headers={"X-API-Key": "junk"})
            assert bad.status_code == 401
    finally:
        await engine.dispose()


async def test_openapi_documents_the_api_key_scheme(secured: httpx.AsyncClient) -> None:
    spec = (await secured.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert "/v1/memory/search" in spec["paths"]
    assert "/v1/admin/retention/run" in spec["paths"]


async def test_only_tenant_keys_open_a_database_session(
    db_engine: AsyncEngine, settings_factory: Callable[..., Settings], tenant: str
) -> None:
    """Configured keys are matched in memory: the request's key check costs no session (a pooled
    connection and its round trips); a tenant key, and only a tenant key, is looked up."""
    settings = settings_factory(api_keys=SERVICE_KEY, admin_api_keys=ADMIN_KEY)
    ring = KeyRing.from_settings(settings)
    real = create_sessionmaker(db_engine)
    opened: list[AsyncSession] = []

    def sessions() -> AsyncSession:
        opened.append(real())
        return opened[-1]

    counting = cast("async_sessionmaker[AsyncSession]", sessions)
    service = await authenticate(counting, settings, ring, SERVICE_KEY)
    admin = await authenticate(counting, settings, ring, ADMIN_KEY)
    with pytest.raises(Unauthenticated):
        await authenticate(counting, settings, ring, "not-a-key")
    assert (service.label, admin.label) == ("service-key", "admin-key")
    assert opened == []

    _, key = await make_key(db_engine, tenant)
    principal = await authenticate(counting, settings, ring, key)
    assert principal.tenant_id == tenant
    assert len(opened) == 1
