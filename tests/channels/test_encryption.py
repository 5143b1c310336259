"""Encryption at rest: an encrypted channel's content and metadata are ciphertext in the table,
plaintext to authorised readers (message, listing, history, search, export, context, edits);
the keyword index sees nothing; the worker embeds the plaintext; keys rotate; no key, no start."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.channels.service import MissingEncryptionKey, rotate_encryption
from memory_layer.config import Settings
from memory_layer.embeddings.providers.fake import FakeEmbeddingProvider
from memory_layer.embeddings.worker import EmbeddingWorker
from memory_layer.kit.crypto import SESSION_KEYRING, EncryptionKeyError, EncryptionKeyRing
from memory_layer.kit.db.engine import create_sessionmaker
from memory_layer.kit.observability.metrics import Metrics
from tests.channels.helpers import put_channel
from tests.fixtures.app import ADMIN_KEY, ENCRYPTION_KEYS, AppClient, make_settings, running_client
from tests.fixtures.messages import message_body
from tests.support.metrics import sample_value, scrape

SECRET = "the vault code is marmalade-7781"
METADATA = {"topic": "vault", "tags": ["secret"]}


async def stored(engine: AsyncEngine, tenant: str) -> list[dict[str, Any]]:
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT id, content, metadata, encryption_key_id, ciphertext, channel, "
                 "content_tsv::text AS tsv, consolidation_status FROM messages "
                 "WHERE tenant_id = :t ORDER BY created_at"),
            {"t": tenant},
        )
        return [dict(row._mapping) for row in result]


async def test_the_table_holds_ciphertext_and_readers_get_plaintext(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await put_channel(client, tenant, "vault", encrypt=True)
    written = await client.post("/v1/messages", json=message_body(
        tenant, SECRET, channel="vault", metadata=METADATA, conversation_id="c1", user_id="ada"
    ))
    assert written.status_code == 200, written.text
    assert (written.json()["content"], written.json()["metadata"]) == (SECRET, METADATA)
    assert written.json()["encrypted"] is True
    await client.post("/v1/messages", json=message_body(
        tenant, "marmalade in the open", conversation_id="c1", user_id="ada"
    ))
    [row, plain] = await stored(db_engine, tenant)
    assert (row["content"], row["metadata"], row["tsv"]) == ("", {}, "")
    assert row["encryption_key_id"] == "new"
    assert row["channel"] == "vault"
    assert b"marmalade" not in row["ciphertext"]
    assert b"vault" not in row["ciphertext"]
    assert row["consolidation_status"] is None
    assert plain["content"] == "marmalade in the open"
    assert plain["encryption_key_id"] is None

    message_id = written.json()["message_id"]
    one = await client.get(f"/v1/messages/{message_id}", params={"tenant_id": tenant})
    assert (one.json()["content"], one.json()["metadata"]) == (SECRET, METADATA)
    listing = await client.get("/v1/messages", params={"tenant_id": tenant, "channel": "vault"})
    assert [item["content"] for item in listing.json()["items"]] == [SECRET]
    history = await client.get(
        "/v1/conversations/c1/messages", params={"tenant_id": tenant, "channel": "vault"}
    )
    assert [item["content"] for item in history.json()["items"]] == [SECRET]

    # Search: by vector it finds the plaintext; the keyword index cannot see it.
    for mode in ("vector", "hybrid"):
        hits = await client.post("/v1/memory/search", json={
            "tenant_id": tenant, "query": SECRET, "mode": mode, "channel": "vault",
        })
        assert [item["content"] for item in hits.json()["items"]] == [SECRET], mode
    found = await client.get("/v1/memory/search", params={
        "tenant_id": tenant, "query": "marmalade", "mode": "keyword",
    })
    assert [item["content"] for item in found.json()["items"]] == ["marmalade in the open"]

    exported = await client.get("/v1/export", params={"tenant_id": tenant, "channel": "vault"})
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert [(line["content"], line["metadata"]) for line in lines] == [(SECRET, METADATA)]

    context = await client.post("/v1/context", json={
        "tenant_id": tenant, "conversation_id": "c1", "channel": "vault", "query": "vault code",
    })
    assert context.status_code == 200, context.text
    assert SECRET in context.json()["text"]
    assert "marmalade in the open" not in context.json()["text"]

    stats = await client.get("/v1/stats", params={"tenant_id": tenant, "channel": "vault"})
    assert stats.json()["messages"] == 1


async def test_edits_and_batches_stay_encrypted(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await put_channel(client, tenant, "vault", encrypt=True)
    batch = await client.post("/v1/messages/batch", json={"tenant_id": tenant, "messages": [
        {"conversation_id": "c", "role": "user", "content": SECRET, "channel": "vault"},
        {"conversation_id": "c", "role": "user", "content": "in the clear"},
    ]})
    assert batch.status_code == 200, batch.text
    message_id = batch.json()["items"][0]["message_id"]
    edited = await client.patch(
        f"/v1/messages/{message_id}", params={"tenant_id": tenant},
        json={"content": "the code changed to quince-12", "metadata": {"topic": "vault"}},
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["content"] == "the code changed to quince-12"
    rows = await stored(db_engine, tenant)
    assert [(r["content"], r["encryption_key_id"] is not None) for r in rows] == [
        ("", True), ("in the clear", False),
    ]
    assert b"quince" not in rows[0]["ciphertext"]
    read = await client.get(f"/v1/messages/{message_id}", params={"tenant_id": tenant})
    assert (read.json()["content"], read.json()["metadata"]) == (
        "the code changed to quince-12", {"topic": "vault"},
    )


async def test_keys_rotate_to_the_newest_resumably(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    old_only = EncryptionKeyRing.parse(ENCRYPTION_KEYS.split(",")[0])
    await put_channel(client, tenant, "vault", encrypt=True)
    ids = []
    for n in range(3):
        answer = await client.post(
            "/v1/messages", json=message_body(tenant, f"{SECRET} {n}", channel="vault")
        )
        ids.append(answer.json()["message_id"])
    # Written under `new`; pretend they are old: re-encrypt them under `old` first.
    both = EncryptionKeyRing.parse(ENCRYPTION_KEYS)
    await rotate_encryption(
        create_sessionmaker(db_engine, {SESSION_KEYRING: both}),
        EncryptionKeyRing.parse(f"{ENCRYPTION_KEYS.split(',')[1]},{ENCRYPTION_KEYS.split(',')[0]}"),
        tenant_id=tenant,
    )
    assert {r["encryption_key_id"] for r in await stored(db_engine, tenant)} == {"old"}
    seen = []
    done = await rotate_encryption(
        create_sessionmaker(db_engine), both, tenant_id=tenant, batch_size=2,
        progress=lambda p: seen.append((p.done, p.remaining)),
    )
    assert done == 3
    assert seen == [(0, 3), (2, 1), (3, 0)]
    assert {r["encryption_key_id"] for r in await stored(db_engine, tenant)} == {"new"}
    # Nothing left: a second run (a resumed one) does nothing.
    assert await rotate_encryption(create_sessionmaker(db_engine), both, tenant_id=tenant) == 0
    for n, message_id in enumerate(ids):
        read = await client.get(f"/v1/messages/{message_id}", params={"tenant_id": tenant})
        assert read.json()["content"] == f"{SECRET} {n}"
    # A ring without the rows' key opens nothing: it says which key is missing.
    with pytest.raises(EncryptionKeyError, match="'new'"):
        await rotate_encryption(create_sessionmaker(db_engine), old_only, tenant_id=tenant)


def test_the_key_ring_setting_is_checked() -> None:
    for value, problem in (
        ("nocolon", "expected id:base64"),
        ("a:not-base64!", "not valid base64"),
        ("a:AAAA", "3 bytes"),
        (f"a:{'A' * 43}=,a:{'A' * 43}=", "appears twice"),
    ):
        with pytest.raises(ValueError, match=problem):
            make_settings("postgresql://x/y", encryption_keys=value)


async def test_registering_an_encrypted_channel_needs_a_key(
    own_engine: AsyncEngine, tenant: str, own_database_url: str
) -> None:
    settings = make_settings(own_database_url, encryption_keys=None)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        refused = await client.put(
            f"/v1/admin/tenants/{tenant}/channels/vault", json={"encrypt": True}
        )
        assert refused.status_code == 409
        assert refused.json()["error"] == "encryption_unavailable"
        assert "MEMORY_ENCRYPTION_KEYS" in refused.json()["detail"]


async def test_start_up_without_a_key_is_refused_once_channels_are_encrypted(
    own_engine: AsyncEngine, own_database_url: str, tenant: str
) -> None:
    settings = make_settings(own_database_url)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        await put_channel(client, tenant, "vault", encrypt=True)
    keyless = make_settings(own_database_url, encryption_keys=None)
    with pytest.raises(MissingEncryptionKey, match="MEMORY_ENCRYPTION_KEYS is unset"):
        async with running_client(keyless):
            pass


async def test_the_worker_embeds_the_plaintext_of_an_encrypted_row(
    own_engine: AsyncEngine, own_database_url: str, tenant: str
) -> None:
    settings = make_settings(own_database_url, async_embeddings=True)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        await put_channel(client, tenant, "vault", encrypt=True)
        queued = await client.post("/v1/messages", json=message_body(tenant, SECRET, channel="vault"))
        assert queued.status_code == 202
        embedder = FakeEmbeddingProvider(384)
        worker = EmbeddingWorker(
            own_engine,
            create_sessionmaker(own_engine, {SESSION_KEYRING: settings.keyring()}),
            embedder, settings, Metrics(),
        )
        assert await worker.drain() == 1
        hits = await client.post("/v1/memory/search", json={
            "tenant_id": tenant, "query": SECRET, "mode": "vector",
        })
    [hit] = hits.json()["items"]
    assert hit["content"] == SECRET
    assert hit["similarity"] == pytest.approx(1.0, abs=1e-5)


async def test_a_retry_replays_and_redis_never_keeps_the_plaintext(
    settings_factory: Callable[..., Settings], redis_url: str, redis_prefix: str, tenant: str
) -> None:
    settings = settings_factory(redis_url=redis_url, redis_key_prefix=redis_prefix)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        await put_channel(client, tenant, "vault", encrypt=True)
        body = message_body(tenant, SECRET, channel="vault", client_message_id="once")
        first = await client.post("/v1/messages", json=body)
        again = await client.post("/v1/messages", json=body)
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["message_id"] == first.json()["message_id"]
        assert again.json()["content"] == SECRET
        query = {"tenant_id": tenant, "query": "vault code", "mode": "vector"}
        for _ in range(2):
            hits = await client.get("/v1/memory/search", params=query)
            assert [item["content"] for item in hits.json()["items"]] == [SECRET]
        scraped = await scrape(client)
        assert sample_value(scraped, "memory_cache_hits_total", {"cache": "search_results"}) in (
            None, 0.0,
        )
    redis = Redis.from_url(redis_url)
    try:
        async for key in redis.scan_iter(match=f"{redis_prefix}*"):
            if await redis.type(key) == b"string":
                value = await redis.get(key)
                assert value is None or b"marmalade" not in value, key
    finally:
        await redis.aclose()


async def test_an_export_imported_into_an_encrypted_default_channel_is_sealed(
    client: AppClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await put_channel(client, tenant, "vault", encrypt=True)
    await client.post("/v1/messages", json=message_body(
        tenant, SECRET, channel="vault", metadata=METADATA
    ))
    exported = await client.get("/v1/export", params={"tenant_id": tenant})
    target = f"{tenant}-copy"
    await put_channel(client, target, "default", encrypt=True)
    imported = await client.post(
        "/v1/import", params={"tenant_id": target}, content=exported.content,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert imported.status_code == 200, imported.text
    [row] = await stored(db_engine, target)
    assert (row["content"], row["metadata"], row["channel"]) == ("", {}, "default")
    assert b"marmalade" not in row["ciphertext"]
    read = await client.get(f"/v1/messages/{row['id']}", params={"tenant_id": target})
    assert (read.json()["content"], read.json()["metadata"]) == (SECRET, METADATA)
