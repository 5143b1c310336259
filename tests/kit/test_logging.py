"""Logs: one JSON access line per request, X-Request-ID accepted or generated, no secrets in lines."""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import LogFormat, Settings
from memory_layer.kit.observability.logging import valid_request_id
from tests.fixtures.app import ADMIN_KEY, SERVICE_KEY, running_client
from tests.fixtures.tenants import tenant_key
from tests.support.logs import captured_logs

GENERATED = re.compile(r"[0-9a-f]{32}")


async def test_one_access_line_per_request_with_id_tenant_route_status_and_duration(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine, tenant: str
) -> None:
    key = await tenant_key(db_engine, tenant)
    with captured_logs() as logs:
        async with running_client(settings_factory(), headers={"X-API-Key": key}) as client:
            created = await client.post(
                "/v1/messages",
                json={"conversation_id": "c", "role": "user", "content": "hello there"},
                headers={"X-Request-ID": "client-req-1"},
            )
            read = await client.get(f"/v1/messages/{created.json()['message_id']}")
            unauthorized = await client.get("/v1/memory/search", params={"query": "q"},
                                            headers={"X-API-Key": "wrong"})
    assert created.status_code == 200
    assert created.headers["X-Request-ID"] == "client-req-1"
    assert GENERATED.fullmatch(read.headers["X-Request-ID"])
    lines = logs.named("request")
    assert [line["logger"] for line in lines] == ["memory_layer.access"] * 3
    post, get, denied = lines
    assert post["request_id"] == "client-req-1"
    assert (post["method"], post["route"], post["status"], post["tenant_id"]) == (
        "POST", "/v1/messages", 200, tenant
    )
    assert post["duration_seconds"] >= 0
    assert post["level"] == "info"
    # The route template, not the path with the message id in it.
    assert (get["route"], get["request_id"]) == ("/v1/messages/{message_id}", read.headers["X-Request-ID"])
    assert unauthorized.status_code == 401
    assert (denied["status"], denied["tenant_id"]) == (401, None)


async def test_log_lines_never_carry_content_queries_or_keys(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine, tenant: str
) -> None:
    key = await tenant_key(db_engine, tenant)
    content = "my locker code is 7Q-SECRET-CONTENT"
    query = "which SECRET-QUERY-words did I use"
    settings = settings_factory(log_level="debug")
    with captured_logs(level="debug") as logs:
        async with running_client(settings, headers={"X-API-Key": key}) as client:
            assert (await client.post(
                "/v1/messages", json={"conversation_id": "c", "role": "user", "content": content}
            )).status_code == 200
            assert (await client.get("/v1/memory/search", params={"query": query})).status_code == 200
            assert (await client.post(
                "/v1/memory/search", json={"query": query, "top_k": 3}
            )).status_code == 200
            # Refused requests too: a 422 echoes its input to the client, never to the log.
            assert (await client.post(
                "/v1/messages", json={"conversation_id": "c", "role": "nobody", "content": content}
            )).status_code == 422
            assert (await client.get(
                "/v1/memory/search", params={"query": query}, headers={"X-API-Key": ADMIN_KEY}
            )).status_code == 422
    assert len(logs.named("request")) == 5
    for secret in ("7Q-SECRET-CONTENT", "SECRET-QUERY", key, ADMIN_KEY, SERVICE_KEY):
        assert secret not in logs.text


async def test_a_bad_request_id_is_replaced_by_a_generated_one(
    settings_factory: Callable[..., Settings],
) -> None:
    bad = ["x" * 129, "has space", "semi;colon", "<script>", "-leading-dash", "é"]
    async with running_client(settings_factory()) as client:
        for value in bad:
            response = await client.get(
                "/v1/admin/health", headers={b"X-Request-ID": value.encode()}
            )
            assert GENERATED.fullmatch(response.headers["X-Request-ID"]), value
        kept = await client.get("/v1/admin/health", headers={"X-Request-ID": "A1.b2_c3:d4-" + "e" * 116})
    assert kept.headers["X-Request-ID"] == "A1.b2_c3:d4-" + "e" * 116
    assert all(not valid_request_id(value) for value in bad)
    assert valid_request_id("0f" * 16)


async def test_console_format_writes_readable_lines(settings_factory: Callable[..., Settings]) -> None:
    with captured_logs(LogFormat.console) as logs:
        async with running_client(settings_factory()) as client:
            await client.get("/v1/admin/health", headers={"X-Request-ID": "console-1"})
    line = next(line for line in logs.text.splitlines() if "memory_layer.access" in line)
    assert not line.lstrip().startswith("{")
    assert "request_id=console-1" in line
    assert "route=/v1/admin/health" in line
