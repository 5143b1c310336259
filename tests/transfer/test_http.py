"""GET /v1/export and POST /v1/import: round trips, idempotency, bad lines, vectors, tenant walls."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.app import create_app
from memory_layer.auth.service import create_api_key
from memory_layer.config import Settings
from memory_layer.kit.db.engine import create_sessionmaker
from tests.fixtures.app import ADMIN_KEY, SERVICE_KEY, running_client
from tests.fixtures.tenants import new_tenant
from tests.transfer.seed import FAKE, MODEL, insert_message, seed_varied

ADMIN = {"X-API-Key": ADMIN_KEY}
NDJSON = {"content-type": "application/x-ndjson"}


def lines_of(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def ndjson(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


async def export(
    client: httpx.AsyncClient, tenant: str | None, **params: Any
) -> list[dict[str, Any]]:
    if tenant is not None:
        params["tenant_id"] = tenant
    return lines_of(await client.get("/v1/export", params=params))


async def import_(
    client: httpx.AsyncClient, tenant: str | None, body: bytes | AsyncIterator[bytes]
) -> httpx.Response:
    params = {} if tenant is None else {"tenant_id": tenant}
    return await client.post("/v1/import", params=params, content=body, headers=NDJSON)


async def rows(engine: AsyncEngine, tenant: str) -> list[dict[str, Any]]:
    async with engine.connect() as connection:
        result = await connection.execute(
            text(
                "SELECT id, embedding_status, embedding_model, embedding IS NOT NULL AS has_vector, "
                "embedding_next_attempt_at IS NOT NULL AS due FROM messages WHERE tenant_id = :t "
                "ORDER BY created_at, id"
            ),
            {"t": tenant},
        )
        return [dict(row._mapping) for row in result]


@pytest.fixture
async def chunky(settings_factory: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    """Imports written three lines per transaction, so chunk boundaries show in small files."""
    async with running_client(settings_factory(import_chunk_lines=3), headers=ADMIN) as client:
        yield client


async def test_export_then_import_into_another_tenant_keeps_everything(
    chunky: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    source, target = new_tenant(), new_tenant()
    ids = await seed_varied(db_engine, source)

    exported = await export(chunky, source)
    assert [line["message_id"] for line in exported] == [str(i) for i in ids]
    first = exported[0]
    assert first == {
        "message_id": str(ids[0]), "client_message_id": "cm-1", "conversation_id": "c-1",
        "user_id": "u-1", "role": "user", "kind": "message", "content": "I love Python programming",
        "metadata": {"channel": "web", "nested": {"a": [1, 2.5, None, True]}, "text": "héllo 🌍"},
        "importance": 0.7, "created_at": "2026-01-01T10:00:00.123456Z", "archived_at": None,
        "expires_at": None, "pii_kinds": [], "embedding_model": MODEL,
    }
    assert [line["kind"] for line in exported] == [
        "message", "summary", "fact", "procedure", "preference", "event", "event"
    ]
    assert exported[2]["archived_at"] == "2026-01-01T10:30:00.123456Z"
    assert exported[3]["content"] == 'tool said:\nline "two"\tand a tab'

    response = await import_(chunky, target, ndjson(exported))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "lines_read": 7, "stored": 7, "skipped": 0, "conflicts": 0, "vectors_reused": 0,
        "queued_for_embedding": 7, "stored_through_line": 7,
    }
    # The same messages, ids and timestamps; only the vectors are still to be made.
    assert await export(chunky, target) == [{**line, "embedding_model": None} for line in exported]
    stored = await rows(db_engine, target)
    assert {(r["embedding_status"], r["has_vector"], r["due"]) for r in stored} == {
        ("pending", False, True)
    }


async def test_include_embeddings_round_trip_reuses_vectors_of_the_running_model(
    chunky: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    source, target = new_tenant(), new_tenant()
    ids = await seed_varied(db_engine, source)

    plain = await export(chunky, source)
    assert all("embedding" not in line for line in plain)
    exported = await export(chunky, source, include_embeddings="true")
    by_model = {line["embedding_model"] for line in exported}
    assert by_model == {MODEL, "legacy-model-384", None}
    for line in exported:
        if line["embedding_model"] is None:
            assert line["embedding"] is None
        else:
            assert len(line["embedding"]) == 384
            assert line["embedding"] == pytest.approx(FAKE.embed_sync(line["content"]), abs=1e-6)

    response = await import_(chunky, target, ndjson(exported))
    assert response.status_code == 200, response.text
    report = response.json()
    # Five vectors of the fake model come back as they were; the legacy model's vector and the
    # pending message are queued for the worker.
    assert (report["stored"], report["vectors_reused"], report["queued_for_embedding"]) == (7, 5, 2)

    again = await export(chunky, target, include_embeddings="true")
    expected = [
        line if line["embedding_model"] == MODEL else {**line, "embedding": None, "embedding_model": None}
        for line in exported
    ]
    assert again == expected  # vectors bit for bit: float4 text out, the same float4 back in
    stored = await rows(db_engine, target)
    status = {r["id"]: (r["embedding_status"], r["has_vector"], r["due"]) for r in stored}
    assert status[ids[0]] == ("ready", True, False)
    assert status[ids[3]] == status[ids[4]] == ("pending", False, True)


async def test_vectors_are_reused_only_with_the_same_model_and_dimension(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    vector = FAKE.embed_sync("hello there")

    def line(model: str | None, embedding: list[float] | None) -> dict[str, Any]:
        return {
            "message_id": str(uuid.uuid4()), "conversation_id": "c", "role": "user",
            "content": "hello there", "importance": 0.5, "created_at": "2026-02-01T00:00:00Z",
            "embedding_model": model, "embedding": embedding,
        }

    lines = [
        line(MODEL, vector),                 # reused
        line("another-model", vector),       # another model: queued
        line(MODEL, vector[:100]),           # wrong dimension: queued
        line(None, vector),                  # no model named: queued
        line(MODEL, None),                   # no vector: queued
    ]
    response = await import_(client, tenant, ndjson(lines))
    assert response.status_code == 200, response.text
    assert (response.json()["vectors_reused"], response.json()["queued_for_embedding"]) == (1, 4)
    status = {r["id"]: (r["embedding_status"], r["embedding_model"]) for r in await rows(db_engine, tenant)}
    assert [status[uuid.UUID(str(x["message_id"]))] for x in lines] == [
        ("ready", MODEL), *[("pending", None)] * 4
    ]


async def test_importing_twice_stores_nothing_new(
    chunky: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    source, target = new_tenant(), new_tenant()
    await seed_varied(db_engine, source)
    body = ndjson(await export(chunky, source, include_embeddings="true"))

    first = await import_(chunky, target, body)
    second = await import_(chunky, target, body)
    assert first.json()["stored"] == 7
    assert second.json() == {
        "lines_read": 7, "stored": 0, "skipped": 7, "conflicts": 0, "vectors_reused": 0,
        "queued_for_embedding": 0, "stored_through_line": 7,
    }
    assert len(await rows(db_engine, target)) == 7


async def test_a_taken_client_message_id_is_a_conflict_not_a_second_message(
    client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str
) -> None:
    await insert_message(db_engine, tenant, "already here", client_message_id="cm-7")
    line = {
        "message_id": str(uuid.uuid4()), "client_message_id": "cm-7", "conversation_id": "c",
        "role": "user", "content": "a different text", "importance": 0.5,
        "created_at": "2026-02-01T00:00:00Z",
    }
    response = await import_(client, tenant, ndjson([line]))
    assert response.status_code == 200, response.text
    assert (response.json()["stored"], response.json()["conflicts"]) == (0, 1)
    assert len(await rows(db_engine, tenant)) == 1


def numbered(count: int) -> list[dict[str, Any]]:
    return [
        {
            "message_id": str(uuid.uuid4()), "conversation_id": "c", "role": "user",
            "content": f"message number {n}", "importance": 0.5,
            "created_at": f"2026-03-01T00:00:{n:02d}Z",
        }
        for n in range(1, count + 1)
    ]


@pytest.mark.parametrize(
    ("bad_line", "code"),
    [
        (b'{"message_id": "not json', "invalid_line"),
        (b'{"role": "robot"}', "invalid_line"),
        (None, "content_too_long"),
    ],
)
async def test_a_bad_line_stops_the_import_after_the_chunks_before_it(
    settings_factory: Callable[..., Settings],
    db_engine: AsyncEngine,
    tenant: str,
    bad_line: bytes | None,
    code: str,
) -> None:
    lines = numbered(10)
    encoded = [json.dumps(line).encode() for line in lines]
    if bad_line is None:
        encoded[7] = json.dumps({**lines[7], "content": "x" * 101}).encode()
    else:
        encoded[7] = bad_line
    settings = settings_factory(import_chunk_lines=3, max_content_chars=100)
    async with running_client(settings, headers=ADMIN) as client:
        response = await import_(client, tenant, b"\n".join(encoded) + b"\n")
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["error"] == code
        detail = body["detail"]
        # Lines 1-6 (two chunks) are committed; line 8 is bad, so its chunk (7-9) is not written.
        assert (detail["line"], detail["stored_through_line"], detail["stored"]) == (8, 6, 6)
        assert "line 8" in detail["message"]
        stored = [r["id"] for r in await rows(db_engine, tenant)]
        assert stored == [uuid.UUID(line["message_id"]) for line in lines[:6]]

        # Resume with the line after stored_through_line, the bad line fixed.
        rest = b"".join(json.dumps(line).encode() + b"\n" for line in lines[6:])
        resumed = await import_(client, tenant, rest)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["stored"] == 4
    assert len(await rows(db_engine, tenant)) == 10


async def test_schema_errors_name_the_field(client: httpx.AsyncClient, tenant: str) -> None:
    line = {**numbered(1)[0], "role": "robot", "surprise": 1}
    response = await import_(client, tenant, ndjson([line]))
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["line"] == 1
    assert {tuple(err["loc"]) for err in detail["errors"]} == {("role",), ("surprise",)}
    assert detail["stored_through_line"] == 0


async def test_blank_lines_and_crlf_are_accepted(client: httpx.AsyncClient, tenant: str) -> None:
    lines = numbered(2)
    body = b"\r\n".join(json.dumps(line).encode() for line in lines) + b"\r\n\r\n"
    response = await import_(client, tenant, body)
    assert response.status_code == 200, response.text
    assert (response.json()["stored"], response.json()["lines_read"]) == (2, 3)


async def test_the_import_body_streams_through_the_size_limit(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine, tenant: str
) -> None:
    """The first chunk is committed while the client still holds the rest of the body: the
    body-size middleware counts the bytes instead of buffering them."""
    lines = numbered(6)
    first, rest = ndjson(lines[:3]), ndjson(lines[3:])

    async def body() -> AsyncIterator[bytes]:
        yield first
        deadline = time.monotonic() + 20
        while len(await rows(db_engine, tenant)) < 3:
            assert time.monotonic() < deadline, "the first chunk was not written before the body ended"
            await asyncio.sleep(0.05)
        yield rest

    async with running_client(settings_factory(import_chunk_lines=3), headers=ADMIN) as client:
        response = await import_(client, tenant, body())
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == 6


async def test_an_import_past_max_import_bytes_is_a_413_naming_what_was_stored(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine, tenant: str
) -> None:
    lines = numbered(40)
    payload = ndjson(lines)
    limit = len(ndjson(lines[:10])) + 5  # the 11th line crosses the limit

    async def chunked() -> AsyncIterator[bytes]:
        for line in lines:
            yield json.dumps(line).encode() + b"\n"

    settings = settings_factory(import_chunk_lines=4, max_import_bytes=limit)
    async with running_client(settings, headers=ADMIN) as client:
        declared = await import_(client, tenant, payload)
        streamed = await import_(client, tenant, chunked())
        small = await import_(client, tenant, ndjson(lines[:2]))
    assert declared.status_code == 413
    assert declared.json()["error"] == "payload_too_large"
    assert "MEMORY_MAX_IMPORT_BYTES" in declared.json()["detail"]
    assert streamed.status_code == 413, streamed.text
    detail = streamed.json()["detail"]
    assert detail["line"] == 11
    assert (detail["stored_through_line"], detail["stored"]) == (8, 8)
    assert "MEMORY_MAX_IMPORT_BYTES" in detail["message"]
    assert small.status_code == 200
    assert small.json()["skipped"] == 2
    assert len(await rows(db_engine, tenant)) == 8


async def test_other_routes_keep_their_small_limit(
    settings_factory: Callable[..., Settings], tenant: str
) -> None:
    settings = settings_factory(max_content_chars=100, max_metadata_bytes=1024)
    body = json.dumps(
        {"tenant_id": tenant, "conversation_id": "c", "role": "user",
         "content": "x" * (settings.max_body_bytes + 1)}
    ).encode()
    async with running_client(settings, headers=ADMIN) as client:
        response = await client.post(
            "/v1/messages", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert "MEMORY_MAX_CONTENT_CHARS" in response.json()["detail"]


async def test_export_filters(client: httpx.AsyncClient, db_engine: AsyncEngine, tenant: str) -> None:
    ids = await seed_varied(db_engine, tenant)

    async def exported(**params: Any) -> list[str]:
        return [line["message_id"] for line in await export(client, tenant, **params)]

    assert await exported(conversation_id="c-2") == [str(ids[2]), str(ids[3])]
    assert await exported(user_id="u-1") == [str(ids[0]), str(ids[4])]
    assert await exported(since="2026-01-01T10:04:00Z") == [str(i) for i in ids[4:]]
    assert await exported(conversation_id="c-2", user_id="u-2") == [str(ids[2])]
    assert await exported(conversation_id="nowhere") == []
    empty = await client.get("/v1/export", params={"tenant_id": new_tenant()})
    assert (empty.status_code, empty.text) == (200, "")


async def test_export_errors_are_json_before_any_line(client: httpx.AsyncClient, tenant: str) -> None:
    naive = await client.get("/v1/export", params={"tenant_id": tenant, "since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422
    assert naive.json()["error"] == "validation_error"
    no_tenant = await client.get("/v1/export", headers={"X-API-Key": SERVICE_KEY})
    assert no_tenant.status_code == 422
    assert no_tenant.json()["error"] == "tenant_required"
    no_key = await client.get("/v1/export", params={"tenant_id": tenant}, headers={"X-API-Key": ""})
    assert no_key.status_code == 401


async def make_key(engine: AsyncEngine, tenant: str) -> str:
    async with create_sessionmaker(engine).begin() as session:
        _, plaintext = await create_api_key(session, tenant, "transfer-test")
    return plaintext


async def test_tenant_keys_cannot_cross_the_wall(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    mine, theirs = new_tenant(), new_tenant()
    await insert_message(db_engine, mine, "my note", conversation_id="shared", user_id="u-mine")
    their_id = await insert_message(
        db_engine, theirs, "their secret", conversation_id="shared", user_id="u-theirs"
    )
    my_key, their_key = await make_key(db_engine, mine), await make_key(db_engine, theirs)

    async with running_client(settings_factory(), headers={"X-API-Key": my_key}) as client:
        refused = await client.get("/v1/export", params={"tenant_id": theirs})
        assert refused.status_code == 403
        assert refused.json()["error"] == "tenant_mismatch"
        own = await export(client, None)
        assert [line["content"] for line in own] == ["my note"]
        # Filters only narrow the key's own tenant: their conversation and user are not reachable.
        assert [line["content"] for line in await export(client, None, conversation_id="shared")] == [
            "my note"
        ]
        assert await export(client, None, user_id="u-theirs") == []

        line = {**numbered(1)[0], "content": "planted"}
        planted = await import_(client, theirs, ndjson([line]))
        assert planted.status_code == 403
        assert planted.json()["error"] == "tenant_mismatch"

        # Their export fed to my key lands in my tenant only, ids and all.
        async with running_client(settings_factory(), headers={"X-API-Key": their_key}) as other:
            theirs_exported = await export(other, None)
            assert [line["message_id"] for line in theirs_exported] == [str(their_id)]
            assert (await other.get("/v1/export", params={"tenant_id": mine})).status_code == 403
        imported = await import_(client, None, ndjson(theirs_exported))
        assert imported.status_code == 200, imported.text
        assert imported.json()["stored"] == 1

    assert [r["id"] for r in await rows(db_engine, theirs)] == [their_id]
    assert len(await rows(db_engine, mine)) == 2


async def test_openapi_documents_the_ndjson_routes(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    export_op = spec["paths"]["/v1/export"]["get"]
    import_op = spec["paths"]["/v1/import"]["post"]
    assert export_op["operationId"] == "export_messages"
    assert import_op["operationId"] == "import_messages"
    ref = {"$ref": "#/components/schemas/ExportedMessage"}
    assert export_op["responses"]["200"]["content"]["application/x-ndjson"]["schema"] == ref
    assert import_op["requestBody"]["content"]["application/x-ndjson"]["schema"] == ref
    assert "ExportedMessage" in spec["components"]["schemas"]
    assert import_op["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ImportFailure"
    }


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"created_at": "2999-01-01T00:00:00Z"}, "invalid_created_at"),
        ({"metadata": {"k": "x" * 2000}}, "metadata_too_large"),
        ({"metadata": {"k": "nul \u0000"}}, "invalid_metadata"),
        ({"embedding_model": MODEL, "embedding": [1e39] * 384}, "invalid_embedding"),
    ],
)
async def test_lines_get_the_limits_of_post_messages(
    settings_factory: Callable[..., Settings], tenant: str, change: dict[str, Any], code: str
) -> None:
    line = {**numbered(1)[0], **change}
    async with running_client(settings_factory(max_metadata_bytes=1024), headers=ADMIN) as client:
        response = await import_(client, tenant, ndjson([line]))
    assert response.status_code == 422, response.text
    assert response.json()["error"] == code
    assert response.json()["detail"]["line"] == 1


@pytest.mark.parametrize("stuck_in_send", [False, True])
async def test_a_client_that_leaves_mid_export_gives_the_connection_back(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine, tenant: str,
    stuck_in_send: bool,
) -> None:
    """The client leaves after the first piece of the body, while the server reads the next
    batch or while it waits on a full socket: either way the cursor's connection goes back."""
    async with db_engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO messages (tenant_id, id, conversation_id, role, content, importance, "
                "created_at) SELECT :t, gen_random_uuid(), 'c', 'user', repeat('x', 500) || n, 0.5, "
                "now() - make_interval(secs => n) FROM generate_series(1, 3000) AS n"
            ),
            {"t": tenant},
        )
    app = create_app(settings_factory())
    async with app.router.lifespan_context(app):
        left = asyncio.Event()
        requested = False
        bodies: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await left.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                bodies.append(message["body"])
                left.set()
                if stuck_in_send:
                    await asyncio.Event().wait()  # a socket that never drains

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": "/v1/export", "raw_path": b"/v1/export",
            "query_string": f"tenant_id={tenant}".encode(), "root_path": "",
            "headers": [(b"host", b"memory.test"), (b"x-api-key", ADMIN_KEY.encode())],
            "client": ("127.0.0.1", 1), "server": ("memory.test", 80),
        }
        await asyncio.wait_for(app(scope, receive, send), timeout=30)  # type: ignore[arg-type]
        assert 0 < sum(body.count(b"\n") for body in bodies) < 3000
        assert app.state.engine.pool.checkedout() == 0


async def test_a_line_longer_than_any_valid_message_is_refused_unbuffered(
    client: httpx.AsyncClient, tenant: str
) -> None:
    lines = numbered(2)
    # No newline for 10 MB: the import stops once the line outgrows the longest valid one.
    body = ndjson(lines[:1]) + b'{"content": "' + b"x" * 10_000_000
    response = await import_(client, tenant, body)
    assert response.status_code == 422
    assert response.json()["error"] == "line_too_long"
    assert (response.json()["detail"]["line"], response.json()["detail"]["stored_through_line"]) == (2, 0)
