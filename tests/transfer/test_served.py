"""Export and import through `memory-layer serve` (uvicorn, real sockets), not only over ASGI."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.tenants import new_tenant
from tests.support.cli import CLI, ROOT, base_env, free_port, stop, wait_healthy

KEY = "served-transfer-key"


@pytest.fixture
def served(database_url: str) -> Iterator[str]:
    port = free_port()
    env = base_env(
        MEMORY_DATABASE_URL=database_url, MEMORY_EMBEDDING_PROVIDER="fake", MEMORY_API_KEYS=KEY,
        MEMORY_WORKER_ENABLED="false", MEMORY_IMPORT_CHUNK_LINES="100",
        MEMORY_LOG_LEVEL="warning",
    )
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port)], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield url
    finally:
        stop(process)


def lines(count: int) -> list[bytes]:
    return [
        json.dumps(
            {"message_id": str(uuid.uuid4()), "conversation_id": "c", "role": "user",
             "content": f"message {n} " + "x" * 200, "importance": 0.5,
             "created_at": "2026-01-01T00:00:00Z"}
        ).encode()
        for n in range(count)
    ]


async def count(engine: AsyncEngine, tenant: str) -> int:
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT count(*) FROM messages WHERE tenant_id = :t"), {"t": tenant}
        )
        return int(result.scalar_one())


async def test_a_bad_line_is_answered_while_the_client_is_still_sending(
    served: str, db_engine: AsyncEngine
) -> None:
    body = lines(20_000)
    body[250] = b"{bad"
    payload = b"\n".join(body) + b"\n"  # about 5 MB, far past any socket buffer
    tenant = new_tenant()

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 65_536):
            yield payload[start : start + 65_536]

    async with httpx.AsyncClient(base_url=served, headers={"X-API-Key": KEY}, timeout=60) as client:
        for content in (payload, chunked()):
            response = await client.post(
                "/v1/import", params={"tenant_id": tenant}, content=content,
                headers={"content-type": "application/x-ndjson"},
            )
            assert response.status_code == 422, response.text
            detail = response.json()["detail"]
            assert (detail["line"], detail["stored_through_line"]) == (251, 200)
    assert await count(db_engine, tenant) == 200


async def test_a_large_export_streams_through_uvicorn(served: str, db_engine: AsyncEngine) -> None:
    tenant = new_tenant()
    async with httpx.AsyncClient(base_url=served, headers={"X-API-Key": KEY}, timeout=60) as client:
        imported = await client.post(
            "/v1/import", params={"tenant_id": tenant}, content=b"\n".join(lines(5_000)),
            headers={"content-type": "application/x-ndjson"},
        )
        assert imported.json()["stored"] == 5_000, imported.text
        received = 0
        async with client.stream("GET", "/v1/export", params={"tenant_id": tenant}) as response:
            assert response.headers["content-type"] == "application/x-ndjson"
            # Chunked transfer: the length is not known when the first lines go out.
            assert response.headers["transfer-encoding"] == "chunked"
            async for chunk in response.aiter_raw():
                received += chunk.count(b"\n")
    assert received == 5_000


async def test_the_import_cli_sends_a_file_to_a_running_service(
    served: str, db_engine: AsyncEngine, tmp_path: Path
) -> None:
    """`memory-layer import --url`: the file goes through POST /v1/import (no database access);
    again, it stores nothing new; a bad line is named with what was committed."""
    tenant = new_tenant()
    file = tmp_path / "lines.ndjson"
    file.write_bytes(b"\n".join(lines(5)) + b"\n")
    # No database in the CLI's environment: everything goes over HTTP.
    env = base_env(MEMORY_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    command = [CLI, "import", "--tenant", tenant, "--url", served, "--api-key", KEY, str(file)]

    first = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    again = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    file.write_bytes(b'{"message_id": "not-a-uuid"}\n')
    broken = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert first.returncode == 0, first.stderr
    assert f"imported into tenant '{tenant}' through {served}: 5 lines read, 5 stored" in first.stderr
    assert again.returncode == 0, again.stderr
    assert "5 lines read, 0 stored, 5 already present" in again.stderr
    assert broken.returncode == 1
    assert "422 invalid_line" in broken.stderr
    async with db_engine.connect() as connection:
        stored = await connection.scalar(
            text("SELECT count(*) FROM messages WHERE tenant_id = :t"), {"t": tenant}
        )
    assert stored == 5
