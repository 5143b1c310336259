"""`memory-layer mcp` as desktop clients start it: a subprocess on stdio, with the SDK's client.

On the test database (MEMORY_DATABASE_URL), and as a proxy to `memory-layer serve` (--base-url).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.contract.served import bound_key, own_database, serve_env, serving
from tests.fixtures.app import TEST_DATA_DIR
from tests.fixtures.database import DatabaseServer
from tests.fixtures.tenants import new_tenant, tenant_key
from tests.mcp.conftest import error, ok
from tests.mcp.test_http import TOOLS
from tests.support.cli import CLI, ROOT, base_env


def database_env(database_url: str) -> dict[str, str]:
    # The worker stays off: the test database is shared, and it would embed other tests' rows.
    return {
        "MEMORY_DATABASE_URL": database_url, "MEMORY_EMBEDDING_PROVIDER": "fake",
        "MEMORY_DATA_DIR": str(TEST_DATA_DIR), "MEMORY_WORKER_ENABLED": "false",
        "MEMORY_LOG_LEVEL": "warning",
    }


def refused(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`memory-layer mcp ARGS` run to its end, its stdin empty."""
    return subprocess.run(
        [CLI, "mcp", *args], env=base_env(**env), cwd=ROOT, input="", capture_output=True,
        text=True, timeout=120, check=False,
    )


@asynccontextmanager
async def stdio_session(*args: str, env: dict[str, str]) -> AsyncIterator[ClientSession]:
    """An initialized SDK client of `memory-layer mcp ARGS` started as a subprocess (with the
    test database's encryption keys, as every process on it: tests/support/cli.py)."""
    server = StdioServerParameters(command=CLI, args=["mcp", *args], env=base_env(**env), cwd=ROOT)
    async with (
        stdio_client(server, errlog=sys.stderr) as (read, write),
        ClientSession(read, write, read_timeout_seconds=120) as session,
    ):
        await session.initialize()
        yield session


async def test_on_the_database_for_a_tenant(database_url: str) -> None:
    tenant = new_tenant()
    async with stdio_session("--tenant-id", tenant, env=database_env(database_url)) as session:
        assert {tool.name for tool in (await session.list_tools()).tools} == TOOLS
        stored = ok(await session.call_tool("remember", {
            "content": "Prefers tea over coffee", "conversation_id": "desk", "kind": "preference",
            "user_id": "me",
        }))
        assert stored["tenant_id"] == tenant
        found = ok(await session.call_tool("recall", {"query": "tea or coffee", "user_id": "me"}))
        assert [item["message_id"] for item in found["items"]] == [stored["message_id"]]
        assert [item["content"] for item in ok(await session.call_tool(
            "history", {"conversation_id": "desk"}
        ))["items"]] == ["Prefers tea over coffee"]
        assert [item["message_id"] for item in ok(await session.call_tool(
            "list_memories", {"user_id": "me", "kinds": ["preference"]}
        ))["items"]] == [stored["message_id"]]
        assert ok(await session.call_tool("get_memory", {"message_id": stored["message_id"]}))
        assert ok(await session.call_tool(
            "update_memory", {"message_id": stored["message_id"], "importance": 0.8}
        ))["importance"] == 0.8
        assert [item["conversation_id"] for item in ok(await session.call_tool(
            "list_conversations", {}
        ))["items"]] == ["desk"]
        state = ok(await session.call_tool("set_state", {"conversation_id": "desk", "state": {"a": 1}}))
        assert ok(await session.call_tool("get_state", {"conversation_id": "desk"}))["etag"] == state["etag"]
        assert error(await session.call_tool("recall", {"query": "tea", "tenant_id": new_tenant()})) == (
            "tenant_mismatch"
        )
        assert ok(await session.call_tool("forget", {"message_id": stored["message_id"]})) == {"deleted": 1}
        assert error(await session.call_tool(
            "forget_conversation", {"conversation_id": "desk"}
        )) == "conversation_not_found"


async def test_read_only_and_keys_on_the_database(database_url: str, db_engine: AsyncEngine) -> None:
    tenant_a, tenant_b = new_tenant(), new_tenant()
    env = database_env(database_url)
    async with stdio_session("--tenant-id", tenant_a, env=env) as session:
        stored = ok(await session.call_tool("remember", {"content": "A's note", "conversation_id": "c"}))
    async with stdio_session("--tenant-id", tenant_a, "--read-only", env=env) as session:
        assert error(await session.call_tool(
            "remember", {"content": "more", "conversation_id": "c"}
        )) == "insufficient_scope"
        assert error(await session.call_tool("forget", {"message_id": stored["message_id"]})) == (
            "insufficient_scope"
        )
        assert len(ok(await session.call_tool("recall", {"query": "note"}))["items"]) == 1
    # A key bound to tenant B acts for B whatever --tenant-id says.
    key_b = await tenant_key(db_engine, tenant_b)
    async with stdio_session("--tenant-id", tenant_a, "--api-key", key_b, env=env) as session:
        assert error(await session.call_tool("get_memory", {"message_id": stored["message_id"]})) == (
            "message_not_found"
        )
        assert ok(await session.call_tool("recall", {"query": "note"}))["items"] == []
        assert ok(await session.call_tool(
            "remember", {"content": "B's note", "conversation_id": "c"}
        ))["tenant_id"] == tenant_b


async def test_proxy_to_a_running_service(db_server: DatabaseServer) -> None:
    url = own_database(db_server, "mcp_proxy")
    tenant_a, tenant_b = new_tenant(), new_tenant()
    key_a, key_b = bound_key(url, tenant_a), bound_key(url, tenant_b)
    with serving(serve_env(url)) as served:
        async with stdio_session("--base-url", served.url, "--api-key", key_a, env={}) as session:
            assert {tool.name for tool in (await session.list_tools()).tools} == TOOLS
            stored = ok(await session.call_tool(
                "remember", {"content": "proxied memory", "conversation_id": "p", "user_id": "u"}
            ))
            assert stored["tenant_id"] == tenant_a
            found = ok(await session.call_tool("recall", {"query": "proxied memory"}))
            assert [item["message_id"] for item in found["items"]] == [stored["message_id"]]
            assert error(await session.call_tool("forget", {"message_id": "nope"})) == "validation_error"
            templates = (await session.list_resource_templates()).resource_templates
            assert len(templates) == 2
            assert [prompt.name for prompt in (await session.list_prompts()).prompts] == ["use_memory"]
        async with stdio_session("--base-url", served.url, "--api-key", key_b, env={}) as session:
            assert error(await session.call_tool("get_memory", {"message_id": stored["message_id"]})) == (
                "message_not_found"
            )
        # The service refuses a key that is not valid: the command says so and stops.
        done = refused("--base-url", served.url, "--api-key", "not-a-key", env={})
        assert done.returncode == 2
        assert "memory-layer mcp: the service refused" in done.stderr


def test_a_key_that_is_not_valid_stops_the_command(database_url: str) -> None:
    done = refused("--api-key", "not-a-key", env=database_env(database_url))
    assert done.returncode == 2
    assert done.stderr.strip().endswith(
        "memory-layer mcp: invalid_api_key: the API key is not valid (or was revoked)"
    )
    assert done.stdout == ""  # nothing but MCP messages ever reaches stdout
    done = refused("--base-url", "http://127.0.0.1:1", env={})
    assert done.returncode == 2
    assert "--base-url needs --api-key" in done.stderr
    done = refused("--tenant-id", "no spaces", env={})
    assert done.returncode == 2
    assert "--tenant-id must match" in done.stderr
