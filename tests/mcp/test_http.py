"""The MCP server over streamable HTTP at /mcp, with the SDK's own client: every tool, the
resources and the prompt; the API keys, scopes, tenant walls and rate limits of REST."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute
from mcp.shared.exceptions import MCPError
from mcp.types import TextContent, TextResourceContents
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import State
from starlette.routing import BaseRoute, Route

from memory_layer.auth.service import create_api_key
from memory_layer.config import Settings
from memory_layer.kit.db.engine import create_sessionmaker
from memory_layer.mcp.http import McpEndpoint
from memory_layer.mcp.runtime import app_runtime
from memory_layer.mcp.server import build_server
from memory_layer.models.api_key import KeyScope
from tests.fixtures.app import ADMIN_KEY, SERVICE_KEY, running_client
from tests.fixtures.rows import insert_rows, message_row
from tests.fixtures.tenants import new_tenant, tenant_key
from tests.mcp.conftest import error, mcp_client, ok

# The application runs in the test's own task (not in a fixture): the SDK's session manager holds
# an anyio task group in the lifespan, which must end in the task that started it.

TOOLS = {
    "remember", "recall", "history", "list_memories", "get_memory", "update_memory", "forget",
    "forget_conversation", "list_conversations", "get_state", "set_state", "context",
    "related", "record_use", "facts", "summarize",
}
# A JSON-RPC request as a client posts it, for the checks below the SDK's client.
LIST_TOOLS = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def read_only_key(engine: AsyncEngine, tenant: str) -> str:
    async with create_sessionmaker(engine).begin() as session:
        _, plaintext = await create_api_key(session, tenant, "reader", scopes={KeyScope.read})
    return plaintext


def leaves(group: BaseExceptionGroup[Exception]) -> list[Exception]:
    """The exceptions in a (nested) exception group."""
    found: list[Exception] = []
    for exc in group.exceptions:
        found += leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return found


def resource_json(contents: list[Any]) -> dict[str, Any]:
    [content] = contents
    assert isinstance(content, TextResourceContents)
    parsed: dict[str, Any] = json.loads(content.text)
    return parsed


async def test_lists_tools_resources_and_the_prompt(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    key = await tenant_key(db_engine, new_tenant())
    async with running_client(settings_factory()) as served, mcp_client(served.app, key) as session:
        tools = (await session.list_tools()).tools
        templates = (await session.list_resource_templates()).resource_templates
        prompts = (await session.list_prompts()).prompts
    assert {tool.name for tool in tools} == TOOLS
    for tool in tools:
        assert tool.description, tool.name
        assert tool.input_schema["type"] == "object"
        assert "ctx" not in tool.input_schema.get("properties", {})
    by_name = {tool.name: tool for tool in tools}
    assert set(by_name["remember"].input_schema["required"]) == {"content", "conversation_id"}
    assert by_name["forget"].annotations is not None
    assert by_name["forget"].annotations.destructive_hint
    assert by_name["recall"].annotations is not None
    assert by_name["recall"].annotations.read_only_hint
    assert {template.uri_template for template in templates} == {
        "memory://conversations/{conversation_id}/history{?tenant_id}",
        "memory://users/{user_id}/facts{?tenant_id}",
    }
    assert [prompt.name for prompt in prompts] == ["use_memory"]


async def test_every_tool_resource_and_the_prompt(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    tenant = new_tenant()
    key = await tenant_key(db_engine, tenant)
    async with running_client(settings_factory()) as served, mcp_client(served.app, key) as session:
        fact = ok(await session.call_tool("remember", {
            "content": "The user's dog is called Biscuit", "conversation_id": "c1",
            "kind": "fact", "user_id": "u1",
        }))
        assert (fact["tenant_id"], fact["kind"], fact["user_id"]) == (tenant, "fact", "u1")
        turn = ok(await session.call_tool("remember", {
            "content": "We talked about walks in the park", "conversation_id": "c1",
            "user_id": "u1", "client_message_id": "turn-1",
        }))
        assert turn["kind"] == "message"
        assert turn["role"] == "user"
        assert not turn["replayed"]
        replay = ok(await session.call_tool("remember", {
            "content": "We talked about walks in the park", "conversation_id": "c1",
            "user_id": "u1", "client_message_id": "turn-1",
        }))
        assert replay["message_id"] == turn["message_id"]
        assert replay["replayed"]

        found = ok(await session.call_tool("recall", {"query": "dog called Biscuit", "kind": "fact"}))
        assert [item["message_id"] for item in found["items"]] == [fact["message_id"]]
        assert found["total"] == 1
        assert found["items"][0]["score"] > 0

        turns = ok(await session.call_tool("history", {"conversation_id": "c1"}))
        assert [item["message_id"] for item in turns["items"]] == [fact["message_id"], turn["message_id"]]
        last = ok(await session.call_tool("history", {"conversation_id": "c1", "limit": 1}))
        assert [item["message_id"] for item in last["items"]] == [turn["message_id"]]
        earlier = ok(await session.call_tool(
            "history", {"conversation_id": "c1", "limit": 1, "cursor": last["next_cursor"]}
        ))
        assert [item["message_id"] for item in earlier["items"]] == [fact["message_id"]]

        facts = ok(await session.call_tool(
            "list_memories", {"user_id": "u1", "kinds": ["fact", "preference"]}
        ))
        assert [item["message_id"] for item in facts["items"]] == [fact["message_id"]]
        everything = ok(await session.call_tool("list_memories", {"user_id": "u1"}))
        assert len(everything["items"]) == 2

        read = ok(await session.call_tool("get_memory", {"message_id": fact["message_id"]}))
        assert read["content"] == "The user's dog is called Biscuit"
        changed = ok(await session.call_tool("update_memory", {
            "message_id": fact["message_id"], "content": "The user's dog is called Pepper",
            "importance": 0.9,
        }))
        assert (changed["content"], changed["importance"]) == ("The user's dog is called Pepper", 0.9)

        near = ok(await session.call_tool("related", {"message_id": fact["message_id"]}))
        assert [item["message_id"] for item in near["items"]] == [turn["message_id"]]
        used = ok(await session.call_tool(
            "record_use", {"message_id": fact["message_id"], "outcome": "success"}
        ))
        assert (used["message_id"], used["use_count"]) == (fact["message_id"], 1)
        assert error(await session.call_tool(
            "record_use", {"message_id": fact["message_id"], "outcome": "maybe"}
        )) == "validation_error"

        conversations = ok(await session.call_tool("list_conversations", {"user_id": "u1"}))
        assert [item["conversation_id"] for item in conversations["items"]] == ["c1"]

        assert error(await session.call_tool("get_state", {"conversation_id": "c1"})) == "state_not_found"
        first = ok(await session.call_tool("set_state", {
            "conversation_id": "c1", "state": {"step": 1}, "only_if_absent": True,
        }))
        assert (first["state"], first["version"]) == ({"step": 1}, 1)
        assert error(await session.call_tool("set_state", {
            "conversation_id": "c1", "state": {"step": 9}, "only_if_absent": True,
        })) == "precondition_failed"
        second = ok(await session.call_tool("set_state", {
            "conversation_id": "c1", "state": {"step": 2}, "expected_etag": first["etag"],
        }))
        assert second["version"] == 2
        # Compare-and-set: a writer holding the first version's etag loses, nothing changes.
        assert error(await session.call_tool("set_state", {
            "conversation_id": "c1", "state": {"step": 3}, "expected_etag": first["etag"],
        })) == "precondition_failed"
        state = ok(await session.call_tool("get_state", {"conversation_id": "c1"}))
        assert (state["state"], state["etag"]) == ({"step": 2}, second["etag"])

        built = ok(await session.call_tool("context", {
            "conversation_id": "c1", "query": "what is the dog called", "budget_tokens": 500,
        }))
        assert [item["message_id"] for item in built["memories"]] == [fact["message_id"]]
        assert "Pepper" in built["text"]
        assert '"step":2' in built["text"].replace(" ", "")
        assert built["total_tokens"] <= built["budget_tokens"] == 500

        history = resource_json((await session.read_resource("memory://conversations/c1/history")).contents)
        assert [item["message_id"] for item in history["items"]] == [fact["message_id"], turn["message_id"]]
        user_facts = resource_json((await session.read_resource("memory://users/u1/facts")).contents)
        assert [item["content"] for item in user_facts["items"]] == ["The user's dog is called Pepper"]

        prompt = await session.get_prompt("use_memory", {"user_id": "u1"})
        [message] = prompt.messages
        assert isinstance(message.content, TextContent)
        assert "`u1`" in message.content.text
        assert "recall" in message.content.text

        assert ok(await session.call_tool("forget", {"message_id": fact["message_id"]})) == {"deleted": 1}
        assert error(await session.call_tool("forget", {"message_id": fact["message_id"]})) == (
            "message_not_found"
        )
        assert ok(await session.call_tool("forget_conversation", {"conversation_id": "c1"})) == {"deleted": 1}
        assert ok(await session.call_tool("history", {"conversation_id": "c1"}))["items"] == []


async def test_bad_arguments_are_validation_errors(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    key = await tenant_key(db_engine, new_tenant())
    settings = settings_factory(max_content_chars=100)
    async with running_client(settings) as served, mcp_client(served.app, key) as session:
        assert error(await session.call_tool("forget", {"message_id": "not-a-uuid"})) == "validation_error"
        assert error(await session.call_tool("remember", {"content": "x"})) == "validation_error"
        assert error(await session.call_tool("recall", {"query": "x", "top_k": 1000})) == "validation_error"
        assert error(await session.call_tool(
            "remember", {"content": "   ", "conversation_id": "c"}
        )) == "validation_error"
        # Checked by the service, as for POST /v1/messages: its code comes back.
        assert error(await session.call_tool(
            "remember", {"content": "x" * 101, "conversation_id": "c"}
        )) == "content_too_long"


async def test_a_tenant_bound_key_cannot_reach_another_tenants_data(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    tenant_a, tenant_b = new_tenant(), new_tenant()
    key_a, key_b = await tenant_key(db_engine, tenant_a), await tenant_key(db_engine, tenant_b)
    async with running_client(settings_factory()) as served:
        async with mcp_client(served.app, key_a) as a:
            secret = ok(await a.call_tool("remember", {
                "content": "tenant A's secret plan", "conversation_id": "shared", "kind": "fact",
                "user_id": "u1",
            }))
            ok(await a.call_tool("set_state", {"conversation_id": "shared", "state": {"owner": "a"}}))
        async with mcp_client(served.app, key_b) as b:
            message_id = secret["message_id"]
            assert error(await b.call_tool("get_memory", {"message_id": message_id})) == "message_not_found"
            assert error(await b.call_tool("forget", {"message_id": message_id})) == "message_not_found"
            assert error(await b.call_tool("related", {"message_id": message_id})) == "message_not_found"
            assert error(await b.call_tool("record_use", {"message_id": message_id})) == (
                "message_not_found"
            )
            assert error(await b.call_tool(
                "update_memory", {"message_id": message_id, "content": "mine now"}
            )) == "message_not_found"
            assert ok(await b.call_tool("recall", {"query": "secret plan"}))["items"] == []
            assert ok(await b.call_tool("history", {"conversation_id": "shared"}))["items"] == []
            assert ok(await b.call_tool("list_memories", {"user_id": "u1"}))["items"] == []
            assert ok(await b.call_tool("list_conversations", {}))["items"] == []
            nothing = ok(await b.call_tool("context", {"conversation_id": "shared", "query": "secret plan"}))
            assert nothing["memories"] == []
            assert "secret" not in nothing["text"]
            assert error(await b.call_tool("get_state", {"conversation_id": "shared"})) == "state_not_found"
            assert error(await b.call_tool(
                "forget_conversation", {"conversation_id": "shared"}
            )) == "conversation_not_found"
            # Naming the other tenant is refused, not ignored.
            for tool, arguments in [
                ("recall", {"query": "secret plan"}),
                ("context", {"conversation_id": "shared"}),
                ("get_memory", {"message_id": message_id}),
                ("forget", {"message_id": message_id}),
                ("remember", {"content": "planted", "conversation_id": "shared"}),
                ("get_state", {"conversation_id": "shared"}),
                ("set_state", {"conversation_id": "shared", "state": {"owner": "b"}}),
            ]:
                result = await b.call_tool(tool, {**arguments, "tenant_id": tenant_a})
                assert error(result) == "tenant_mismatch", tool
            facts = resource_json((await b.read_resource("memory://users/u1/facts")).contents)
            assert facts["items"] == []
            with pytest.raises(MCPError) as refused:
                await b.read_resource(f"memory://users/u1/facts?tenant_id={tenant_a}")
            assert isinstance(refused.value.error.data, dict)
            assert refused.value.error.data["error"] == "tenant_mismatch"
        async with mcp_client(served.app, key_a) as a:
            assert ok(await a.call_tool("get_memory", {"message_id": message_id}))["content"] == (
                "tenant A's secret plan"
            )
            state = ok(await a.call_tool("get_state", {"conversation_id": "shared"}))
            assert state["state"] == {"owner": "a"}


async def test_a_read_only_key_cannot_write(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    tenant = new_tenant()
    writer, reader = await tenant_key(db_engine, tenant), await read_only_key(db_engine, tenant)
    async with running_client(settings_factory()) as served:
        async with mcp_client(served.app, writer) as session:
            stored = ok(await session.call_tool("remember", {"content": "kept", "conversation_id": "c"}))
        async with mcp_client(served.app, reader) as session:
            for tool, arguments in [
                ("remember", {"content": "more", "conversation_id": "c"}),
                ("forget", {"message_id": stored["message_id"]}),
                ("forget_conversation", {"conversation_id": "c"}),
                ("update_memory", {"message_id": stored["message_id"], "importance": 1.0}),
                ("set_state", {"conversation_id": "c", "state": {}}),
                ("record_use", {"message_id": stored["message_id"]}),
                ("summarize", {"conversation_id": "c"}),
            ]:
                result = await session.call_tool(tool, arguments)
                assert error(result) == "insufficient_scope", tool
                assert result.structured_content is not None
                assert result.structured_content["detail"]["required_scope"] == "write"
            # Reading is what the key is for.
            assert ok(await session.call_tool("get_memory", {"message_id": stored["message_id"]}))
            assert len(ok(await session.call_tool("recall", {"query": "kept"}))["items"]) == 1


async def test_keys_in_either_header_and_unbound_keys_name_their_tenant(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    tenant = new_tenant()
    key = await tenant_key(db_engine, tenant)
    async with running_client(settings_factory()) as served:
        async with mcp_client(served.app, key, bearer=True) as session:
            stored = ok(await session.call_tool("remember", {"content": "by bearer", "conversation_id": "c"}))
            assert stored["tenant_id"] == tenant
        async with mcp_client(served.app, SERVICE_KEY, bearer=True) as session:
            assert error(await session.call_tool("recall", {"query": "bearer"})) == "tenant_required"
            found = ok(await session.call_tool("recall", {"query": "bearer", "tenant_id": tenant}))
            assert [item["message_id"] for item in found["items"]] == [stored["message_id"]]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"X-API-Key": "not-a-key"}, "invalid_api_key"),
        ({"Authorization": "Bearer not-a-key"}, "invalid_api_key"),
        ({"Authorization": f"Basic {ADMIN_KEY}"}, "missing_api_key"),
    ],
)
async def test_no_valid_key_is_a_401_before_the_sdk(
    settings_factory: Callable[..., Settings], headers: dict[str, str], code: str
) -> None:
    async with running_client(settings_factory()) as served:
        response = await served.post("/mcp", json=LIST_TOOLS, headers={**ACCEPT, **headers})
        assert response.status_code == 401, response.text
        assert response.json()["error"] == code
        # The SDK's client is refused too (its task groups wrap the error): nothing is served.
        refused = []
        try:
            async with mcp_client(served.app, headers.get("X-API-Key")) as session:
                await session.list_tools()
        except* MCPError as errors:
            refused = [str(exc) for exc in leaves(errors)]
        assert refused == ["Server returned an error response"]


async def test_the_mcp_surface_adds_no_route_that_bypasses_authentication(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_client(settings_factory()) as served:
        # Besides the included API routers (each route with its declared scope:
        # tests/test_architecture.py) and FastAPI's documents, the application's one route is the
        # authenticated /mcp endpoint: no mount, nothing of the SDK's own.
        documents = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
        plain = [
            route for route in served.app.router.routes
            if isinstance(route, BaseRoute) and not isinstance(route, APIRoute)
            and getattr(route, "path", None) not in documents
            and type(route).__name__ != "_IncludedRouter"
        ]
        assert [type(route) for route in plain] == [Route]
        [endpoint] = plain
        assert isinstance(endpoint, Route)
        assert endpoint.path == "/mcp"
        assert isinstance(endpoint.app, McpEndpoint)
        for method in ("GET", "POST", "DELETE", "PUT", "PATCH"):
            for path in ("/mcp", "/mcp/"):
                response = await served.request(
                    method, path, headers=ACCEPT, json=LIST_TOOLS, follow_redirects=True
                )
                assert response.status_code == 401, (method, path, response.status_code)
            # Nothing is served below /mcp, with a key or without.
            for headers in ({}, {"X-API-Key": ADMIN_KEY}):
                response = await served.request(method, "/mcp/messages", headers={**ACCEPT, **headers})
                assert response.status_code in (404, 405), (method, response.status_code)


async def test_the_tenant_rate_limit_counts_mcp_requests(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    key = await tenant_key(db_engine, new_tenant())
    async with running_client(settings_factory(tenant_rate_limit="3/minute")) as served:
        statuses = []
        for _ in range(4):
            response = await served.post("/mcp", json=LIST_TOOLS, headers={**ACCEPT, "X-API-Key": key})
            statuses.append(response.status_code)
        assert statuses == [200, 200, 200, 429]
        assert response.json()["error"] == "rate_limited"
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert int(response.headers["Retry-After"]) > 0


async def test_the_global_rate_limit_counts_mcp_requests(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_client(settings_factory(global_rate_limit="2/minute")) as served:
        statuses = [
            (await served.post("/mcp", json=LIST_TOOLS, headers=ACCEPT)).status_code for _ in range(3)
        ]
    # Counted before the key is even looked at, as for every route.
    assert statuses == [401, 401, 429]


async def test_a_tools_list_answer_over_plain_http(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    """What a client without the SDK sees: one JSON answer per POST, no session to keep."""
    key = await tenant_key(db_engine, new_tenant())
    async with running_client(settings_factory()) as served:
        response = await served.post("/mcp", json=LIST_TOOLS, headers={**ACCEPT, "X-API-Key": key})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "mcp-session-id" not in response.headers
    assert {tool["name"] for tool in response.json()["result"]["tools"]} == TOOLS
    # A tool call needs no handshake either (the curl example of docs/mcp.md).
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "recall", "arguments": {"query": "what is the dog called"}}}
    async with running_client(settings_factory()) as served:
        response = await served.post("/mcp", json=call, headers={**ACCEPT, "X-API-Key": key})
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert not result["isError"]
    assert result["structuredContent"]["items"] == []


def test_building_the_server_leaves_logging_alone() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.handlers.clear()
    try:
        build_server(app_runtime(State()))
        assert (root.handlers, root.level) == ([], level)
    finally:
        root.handlers[:] = handlers


async def test_facts_and_summaries_of_consolidation(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine
) -> None:
    tenant, other = new_tenant(), new_tenant()
    key, other_key = await tenant_key(db_engine, tenant), await tenant_key(db_engine, other)
    past = datetime.now(UTC) - timedelta(hours=1)
    old = message_row(tenant, "profile", past - timedelta(days=1), kind="fact", user_id="u1",
                      content="The user lives in Porto.")
    new = message_row(tenant, "profile", past, kind="fact", user_id="u1",
                      content="The user lives in Berlin.")
    old["superseded_by"], old["valid_until"] = new["id"], past
    await insert_rows(db_engine, [old, new])
    async with running_client(settings_factory()) as served:
        async with mcp_client(served.app, key) as session:
            current = ok(await session.call_tool("facts", {"user_id": "u1"}))
            assert [item["content"] for item in current["items"]] == ["The user lives in Berlin."]
            both = ok(await session.call_tool("facts", {"user_id": "u1", "include_superseded": True}))
            assert len(both["items"]) == 2
            for content in ["I plan a trip to Lisbon in May.", "Five days, flying from Berlin."]:
                ok(await session.call_tool(
                    "remember", {"content": content, "conversation_id": "trip", "user_id": "u1"}
                ))
            made = ok(await session.call_tool("summarize", {"conversation_id": "trip"}))
            assert made["updated"] is True
            assert "Lisbon" in made["content"]
            again = ok(await session.call_tool("summarize", {"conversation_id": "trip"}))
            assert again["updated"] is False
            assert again["message_id"] == made["message_id"]
            nothing = await session.call_tool("summarize", {"conversation_id": "empty"})
            assert error(nothing) == "conversation_not_found"
        # Another tenant's key sees none of it.
        async with mcp_client(served.app, other_key) as session:
            assert ok(await session.call_tool("facts", {"user_id": "u1"}))["items"] == []
            assert error(await session.call_tool(
                "summarize", {"conversation_id": "trip", "tenant_id": tenant}
            )) == "tenant_mismatch"
