"""The MCP tools over streamable HTTP at /mcp, with the SDK's own client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from tests.fixtures.app import ADMIN_KEY, AppClient, running_client
from tests.fixtures.tenants import new_tenant, tenant_key
from tests.mcp.conftest import error, mcp_client, ok

TOOLS = {
    "remember", "recall", "history", "list_memories", "get_memory", "update_memory", "forget",
    "forget_conversation", "list_conversations", "get_state", "set_state",
}


# The application runs in the test's own task (not a fixture's): the SDK's session manager holds
# an anyio task group in the lifespan, which must end in the task that started it.


async def test_list_tools_with_schemas_and_descriptions(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    key = await tenant_key(db_engine, new_tenant())
    async with running_client(settings_factory()) as served, mcp_client(served.app, key) as session:
        tools = (await session.list_tools()).tools
    assert {tool.name for tool in tools} == TOOLS
    for tool in tools:
        assert tool.description, tool.name
        assert tool.input_schema["type"] == "object"
        assert "ctx" not in tool.input_schema.get("properties", {})
    remember = next(tool for tool in tools if tool.name == "remember")
    assert set(remember.input_schema["required"]) == {"content", "conversation_id"}


async def test_remember_recall_history_forget(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    tenant = new_tenant()
    key = await tenant_key(db_engine, tenant)
    async with running_client(settings_factory()) as served, mcp_client(served.app, key) as session:
        stored = ok(await session.call_tool("remember", {
            "content": "The user's dog is called Biscuit", "conversation_id": "c1",
            "kind": "fact", "user_id": "u1",
        }))
        assert stored["tenant_id"] == tenant
        assert stored["kind"] == "fact"
        found = ok(await session.call_tool("recall", {"query": "what is the dog called", "user_id": "u1"}))
        assert [item["message_id"] for item in found["items"]] == [stored["message_id"]]
        turns = ok(await session.call_tool("history", {"conversation_id": "c1"}))
        assert [item["content"] for item in turns["items"]] == ["The user's dog is called Biscuit"]
        assert ok(await session.call_tool("forget", {"message_id": stored["message_id"]})) == {"deleted": 1}
        assert error(await session.call_tool("forget", {"message_id": stored["message_id"]})) == (
            "message_not_found"
        )
