"""A write's `Location` and `status_url` are readable exactly as given, by the key that wrote it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from memory_layer.kit.db.migrations import upgrade_to_head
from tests.fixtures.app import ADMIN_KEY, SERVICE_KEY, make_settings, running_client
from tests.fixtures.database import DatabaseServer
from tests.fixtures.tenants import new_tenant, tenant_key

KEY_KINDS = ["service", "admin", "tenant-bound", "open-development"]


@pytest.fixture(scope="module")
def open_database_url(db_server: DatabaseServer) -> str:
    """A database of its own with no tenant key in it: open development mode stays open."""
    url = db_server.create_database("memory_layer_open_links")
    upgrade_to_head(url, 384)
    return url


@dataclass
class Caller:
    client: httpx.AsyncClient
    tenant: str
    # Service and admin keys (and open mode) must name the tenant; a tenant-bound key need not.
    names_tenant: bool

    def body(self, **fields: Any) -> dict[str, Any]:
        return {"tenant_id": self.tenant, **fields} if self.names_tenant else fields


@asynccontextmanager
async def caller(
    kind: str, settings_factory: Callable[..., Settings], open_database_url: str,
    db_engine: AsyncEngine, **overrides: Any,
) -> AsyncIterator[Caller]:
    # `/` and `+` are valid in a tenant id and must survive the trip through the query string.
    tenant = f"{new_tenant()}/eu+1"
    if kind == "open-development":
        settings = make_settings(open_database_url, api_keys=[], admin_api_keys=[], **overrides)
        headers: dict[str, str] = {}
    else:
        settings = settings_factory(**overrides)
        key = {"service": SERVICE_KEY, "admin": ADMIN_KEY}.get(kind)
        if key is None:
            key = await tenant_key(db_engine, tenant)
        headers = {"X-API-Key": key}
    async with running_client(settings, headers=headers) as client:
        yield Caller(client, tenant, names_tenant=kind != "tenant-bound")


@pytest.mark.parametrize("async_embeddings", [False, True], ids=["inline", "async"])
@pytest.mark.parametrize("kind", KEY_KINDS)
async def test_a_written_message_is_read_back_through_its_links(
    kind: str, async_embeddings: bool, settings_factory: Callable[..., Settings],
    open_database_url: str, db_engine: AsyncEngine,
) -> None:
    async with caller(
        kind, settings_factory, open_database_url, db_engine, async_embeddings=async_embeddings
    ) as me:
        written = await me.client.post(
            "/v1/messages", json=me.body(conversation_id="c", role="user", content="a note")
        )
        assert written.status_code == (202 if async_embeddings else 200), written.text
        body = written.json()
        assert body["tenant_id"] == me.tenant
        links = [body["status_url"]]
        if async_embeddings:
            assert written.headers["Location"] == body["status_url"]
            links.append(written.headers["Location"])
        else:
            assert "Location" not in written.headers
        for link in links:
            read = await me.client.get(link)
            assert read.status_code == 200, (link, read.text)
            assert read.json() == body

        # The link is the message's own URL: edit and delete go through it too.
        edited = await me.client.patch(body["status_url"], json={"importance": 0.9})
        assert edited.status_code == written.status_code, edited.text
        assert edited.json()["importance"] == pytest.approx(0.9)
        deleted = await me.client.delete(body["status_url"])
        assert deleted.status_code == 200, deleted.text
        assert deleted.json() == {"deleted": 1}
        assert (await me.client.get(body["status_url"])).status_code == 404


@pytest.mark.parametrize("kind", KEY_KINDS)
async def test_every_status_url_of_a_batch_is_readable_as_given(
    kind: str, settings_factory: Callable[..., Settings], open_database_url: str,
    db_engine: AsyncEngine,
) -> None:
    async with caller(kind, settings_factory, open_database_url, db_engine) as me:
        messages = [{"conversation_id": "c", "role": "user", "content": f"note {i}"} for i in range(3)]
        written = await me.client.post("/v1/messages/batch", json=me.body(messages=messages))
        assert written.status_code == 200, written.text
        for item, sent in zip(written.json()["items"], messages, strict=True):
            read = await me.client.get(item["status_url"])
            assert read.status_code == 200, read.text
            assert read.json()["message_id"] == item["message_id"]
            assert read.json()["content"] == sent["content"]
            assert read.json()["tenant_id"] == me.tenant


def test_the_link_encodes_the_tenant() -> None:
    import uuid

    from memory_layer.messages.schemas import status_url

    message_id = uuid.UUID("2f0ac110-dbd0-40a5-bc3f-c3474a446440")
    assert status_url(message_id, "acme/eu+1") == (
        "/v1/messages/2f0ac110-dbd0-40a5-bc3f-c3474a446440?tenant_id=acme%2Feu%2B1"
    )
