"""The `memory-layer` console script, run as users run it (a real subprocess)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.tenants import new_tenant
from tests.support.cli import base_env, free_port, run_cli, serve, stop, wait_healthy


def test_keys_create_list_revoke(database_url: str) -> None:
    tenant = new_tenant()
    env = base_env(MEMORY_DATABASE_URL=database_url, MEMORY_EMBEDDING_PROVIDER="fake")
    created = run_cli("keys", "create", "--tenant", tenant, "--name", "bot", env=env)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["tenant_id"] == tenant
    assert key["api_key"].startswith("mlk_")
    assert "shown only once" in created.stderr

    listed = json.loads(run_cli("keys", "list", "--tenant", tenant, env=env).stdout)
    assert [(k["id"], k["name"], k["revoked_at"]) for k in listed] == [(key["id"], "bot", None)]
    assert key["api_key"] not in json.dumps(listed)

    revoked = json.loads(run_cli("keys", "revoke", key["id"], env=env).stdout)
    assert revoked == {"revoked": True}


def test_keys_create_with_scopes_any_tenant_and_expiry(database_url: str) -> None:
    env = base_env(MEMORY_DATABASE_URL=database_url, MEMORY_EMBEDDING_PROVIDER="fake")
    reader = run_cli(
        "keys", "create", "--tenant", new_tenant(), "--scope", "read", "--expires-in-days", "30",
        env=env,
    )
    assert reader.returncode == 0, reader.stderr
    created = json.loads(reader.stdout)
    assert created["scopes"] == ["read"]
    assert created["expires_at"] is not None
    operator = run_cli(
        "keys", "create", "--any-tenant", "--scope", "admin", "--scope", "read",
        "--expires-at", "2999-01-01T00:00:00", env=env,
    )
    assert operator.returncode == 0, operator.stderr
    unbound = json.loads(operator.stdout)
    assert unbound["tenant_id"] is None
    assert unbound["scopes"] == ["read", "admin"]
    assert unbound["expires_at"].startswith("2999-01-01T00:00:00+00:00")
    neither = run_cli("keys", "create", "--scope", "read", env=env)
    assert neither.returncode != 0
    bound_admin = run_cli("keys", "create", "--tenant", "t", "--scope", "admin", env=env)
    assert bound_admin.returncode == 2
    assert "invalid_scopes" in bound_admin.stderr
    assert "Traceback" not in bound_admin.stderr


def test_migrate_is_idempotent_on_an_external_database(database_url: str) -> None:
    env = base_env(MEMORY_DATABASE_URL=database_url)
    result = run_cli("migrate", env=env)
    assert result.returncode == 0, result.stderr
    assert "at head" in result.stdout


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({}, "MEMORY_API_KEYS"),
        ({"MEMORY_API_KEYS": "k"}, "MEMORY_REDIS_URL"),
    ],
)
def test_production_refuses_to_start_unsafely(extra: dict[str, str], needle: str) -> None:
    env = base_env(MEMORY_ENVIRONMENT="production", **extra)
    result = run_cli("serve", "--port", "1", env=env, timeout=60)
    assert result.returncode == 2
    assert needle in result.stderr


def test_embedded_default_serves_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    tenant = new_tenant()

    first = serve(data_dir, port)
    try:
        wait_healthy(url, first)
        created = httpx.post(
            f"{url}/v1/messages",
            json={"tenant_id": tenant, "conversation_id": "conv-123", "role": "user",
                  "content": "I love Python programming"},
        )
        assert created.status_code == 200
    finally:
        output = stop(first)
    assert first.returncode == 0, output
    assert "No API keys configured" in output
    # Ctrl-C stopped PostgreSQL too: no server holds the data directory any more.
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()

    second = serve(data_dir, port)
    try:
        wait_healthy(url, second)
        found = httpx.get(
            f"{url}/v1/memory/search", params={"tenant_id": tenant, "query": "python"}
        )
    finally:
        stop(second)
    assert [item["message_id"] for item in found.json()["items"]] == [
        created.json()["message_id"]
    ]


async def test_retention_run_from_the_command_line(database_url: str, db_engine: AsyncEngine) -> None:
    import asyncio

    tenant = new_tenant()
    async with db_engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO messages (tenant_id, id, conversation_id, role, content, importance, "
                "created_at) VALUES (:t, gen_random_uuid(), 'c', 'user', 'old note', 0.1, "
                "now() - interval '400 days'), (:t, gen_random_uuid(), 'c', 'user', 'new', 0.1, now())"
            ),
            {"t": tenant},
        )
    env = base_env(MEMORY_DATABASE_URL=database_url, MEMORY_RETENTION_MAX_AGE_DAYS="365")

    dry = await asyncio.to_thread(run_cli, "retention", "run", "--tenant", tenant, "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["matched"] == 1
    assert json.loads(dry.stdout)["archived"] == 0

    real = await asyncio.to_thread(run_cli, "retention", "run", "--tenant", tenant, env=env)
    report = json.loads(real.stdout)
    # No rule given: the tenant's policy applies (here the defaults: archive after 365 days).
    assert (report["by_policy"], report["archived"]) == (True, 1)
    async with db_engine.connect() as connection:
        archived = (
            await connection.execute(
                text("SELECT count(*) FROM messages WHERE tenant_id = :t AND archived_at IS NOT NULL"),
                {"t": tenant},
            )
        ).scalar_one()
    assert archived == 1
