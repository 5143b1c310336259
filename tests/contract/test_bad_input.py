"""A catalogue of bad input: each is a 4xx the document lists for its route, with the error body,
and nothing is written."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import AppClient
from tests.fixtures.messages import count_rows
from tests.fixtures.tenants import new_tenant

TENANT = new_tenant()
JSON = {"content-type": "application/json"}


def message(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"tenant_id": TENANT, "conversation_id": "c", "role": "user",
                            "content": "hello"}
    body.update(overrides)
    return body


def encoded(**overrides: Any) -> bytes:
    return json.dumps(message(**overrides)).encode()


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


VALID = encoded()
# (label, method, path, body bytes or None, headers, expected status)
CATALOGUE: list[tuple[str, str, str, bytes | None, dict[str, str], int]] = [
    # Invalid UTF-8 and NUL.
    ("invalid UTF-8 in a string", "POST", "/v1/messages", VALID.replace(b"hello", b"h\xffllo"), JSON, 422),
    ("invalid UTF-8 overlong", "POST", "/v1/messages", VALID.replace(b"hello", b"\xc0\xafx"), JSON, 422),
    ("raw NUL byte in JSON", "POST", "/v1/messages", VALID.replace(b"hello", b"he\x00llo"), JSON, 422),
    ("NUL in content", "POST", "/v1/messages", encoded(content="he\x00llo"), JSON, 422),
    ("NUL in conversation_id", "POST", "/v1/messages", encoded(conversation_id="c\x00"), JSON, 422),
    ("NUL in tenant_id", "POST", "/v1/messages", encoded(tenant_id=TENANT + "\x00"), JSON, 422),
    ("NUL in a metadata key", "POST", "/v1/messages", encoded(metadata={"k\x00": 1}), JSON, 422),
    ("NUL in nested metadata", "POST", "/v1/messages", encoded(metadata={"k": ["\x00"]}), JSON, 422),
    ("NUL in a batch item", "POST", "/v1/messages/batch",
     json.dumps({"tenant_id": TENANT, "messages": [{"conversation_id": "c", "role": "user",
                                                    "content": "a\x00"}]}).encode(), JSON, 422),
    ("NUL in a query", "GET", f"/v1/memory/search?tenant_id={TENANT}&query=a%00b", None, {}, 422),
    ("NUL in a path", "GET", f"/v1/conversations/a%00b?tenant_id={TENANT}", None, {}, 422),
    ("NUL in a search metadata filter", "POST", "/v1/memory/search",
     json.dumps({"tenant_id": TENANT, "query": "q", "metadata": {"\x00": 1}}).encode(), JSON, 422),
    # Huge numbers.
    ("importance 1e400", "POST", "/v1/messages",
     VALID.replace(b'"content"', b'"importance_override": 1e400, "content"'), JSON, 422),
    ("NaN", "POST", "/v1/messages",
     VALID.replace(b'"content"', b'"importance_override": NaN, "content"'), JSON, 422),
    ("Infinity in metadata", "POST", "/v1/messages",
     VALID.replace(b'"content"', b'"metadata": {"n": -Infinity}, "content"'), JSON, 422),
    ("a 5000-digit integer", "POST", "/v1/messages",
     VALID.replace(b'"content"', b'"metadata": {"n": ' + b"9" * 5000 + b'}, "content"'), JSON, 422),
    ("older_than_days 3.07e307", "POST", "/v1/admin/retention/run",
     b'{"older_than_days": 3.07e307, "dry_run": true}', JSON, 422),
    ("older_than_days 1e6", "POST", "/v1/admin/retention/run",
     b'{"older_than_days": 1000000, "dry_run": true}', JSON, 422),
    ("top_k 1e30", "POST", "/v1/memory/search",
     json.dumps({"tenant_id": TENANT, "query": "q", "top_k": 10**30}).encode(), JSON, 422),
    ("created_at before year 1 in UTC", "POST", "/v1/messages",
     encoded(created_at="0001-01-01T00:00:00+14:00"), JSON, 422),
    ("created_at as a number", "POST", "/v1/messages", encoded(created_at=0), JSON, 422),
    ("since as a number", "GET", f"/v1/memory/search?tenant_id={TENANT}&query=q&since=309", None, {},
     422),
    # Deep JSON.
    ("metadata 100 levels deep", "POST", "/v1/messages", encoded(metadata=nested(100)), JSON, 422),
    ("100000 nested arrays", "POST", "/v1/messages", b"[" * 100_000 + b"]" * 100_000, JSON, 422),
    # Wrong shapes and types.
    ("empty body", "POST", "/v1/messages", b"", JSON, 422),
    ("an array body", "POST", "/v1/messages", b"[]", JSON, 422),
    ("broken JSON", "POST", "/v1/messages", b'{"tenant_id": ', JSON, 422),
    ("dry_run 0", "POST", "/v1/admin/retention/run", b'{"dry_run": 0}', JSON, 422),
    ("importance false", "POST", "/v1/messages", encoded(importance_override=False), JSON, 422),
    ("role 1", "POST", "/v1/messages", encoded(role=1), JSON, 422),
    ("text/plain", "POST", "/v1/messages", VALID, {"content-type": "text/plain"}, 422),
    ("form encoded", "POST", "/v1/messages", b"tenant_id=x&content=y",
     {"content-type": "application/x-www-form-urlencoded"}, 422),
    ("an unknown field", "POST", "/v1/messages", encoded(tenant="x"), JSON, 422),
    ("a non-ASCII tenant id", "GET", "/v1/admin/embeddings?tenant_id=%C3%8B", None, {}, 422),
    # Duplicate keys, in bodies and query strings.
    ("duplicate tenant_id key", "POST", "/v1/messages",
     VALID.replace(b'{"tenant_id"', b'{"tenant_id": "other", "tenant_id"'), JSON, 422),
    ("duplicate nested key", "POST", "/v1/messages",
     VALID.replace(b'"content"', b'"metadata": {"a": 1, "a": 2}, "content"'), JSON, 422),
    ("duplicate query parameter", "GET",
     f"/v1/memory/search?tenant_id={TENANT}&tenant_id=other&query=q", None, {}, 422),
    # Negative and huge limits.
    ("limit -1", "GET", f"/v1/conversations?tenant_id={TENANT}&limit=-1", None, {}, 422),
    ("limit 0", "GET", f"/v1/conversations/c/messages?tenant_id={TENANT}&limit=0", None, {}, 422),
    ("limit 1e30", "GET", f"/v1/conversations?tenant_id={TENANT}&limit={10**30}", None, {}, 422),
    ("top_k -5", "GET", f"/v1/memory/search?tenant_id={TENANT}&query=q&top_k=-5", None, {}, 422),
    ("top_k huge", "GET", f"/v1/memory/search?tenant_id={TENANT}&query=q&top_k={10**30}", None, {},
     422),
    ("a batch of 0", "POST", "/v1/messages/batch",
     json.dumps({"tenant_id": TENANT, "messages": []}).encode(), JSON, 422),
    # Oversized bodies.
    ("body past the limit", "POST", "/v1/messages", None, JSON, 413),
    ("requeue of 1001 ids", "POST", "/v1/admin/embeddings/requeue",
     json.dumps({"tenant_id": TENANT,
                 "message_ids": ["00000000-0000-0000-0000-000000000000"] * 1001}).encode(), JSON, 422),
]


def _operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """The operation of the document that serves this concrete path."""
    import re

    bare = path.split("?")[0]
    for template, item in document["paths"].items():
        pattern = re.sub(r"\{[^}:]+(:path)?\}", lambda m: ".+" if m.group(1) else "[^/]+", template)
        if re.fullmatch(pattern, bare) and method.lower() in item:
            operation: dict[str, Any] = item[method.lower()]
            return operation
    raise AssertionError(f"no operation for {method} {path}")


async def test_bad_input_is_a_documented_4xx_and_writes_nothing(
    client: AppClient, db_engine: AsyncEngine
) -> None:
    # One app for the whole catalogue (starting one per case would take most of the time).
    document = (await client.get("/openapi.json")).json()
    wrong: list[str] = []
    for label, method, path, body, headers, status in CATALOGUE:
        if label == "body past the limit":
            body = encoded(content="x" * client.app.state.settings.max_body_bytes)
        response = await client.request(method, path, content=body, headers=headers)
        if response.status_code != status:
            wrong.append(f"{label}: {response.status_code} {response.text[:200]}")
            continue
        if set(response.json()) != {"error", "detail"}:
            wrong.append(f"{label}: not the error body: {response.text[:200]}")
        if str(status) not in _operation(document, method, path)["responses"]:
            wrong.append(f"{label}: {status} is not documented for {method} {path}")
    assert not wrong, "\n".join(wrong)
    assert len(CATALOGUE) >= 40
    assert await count_rows(db_engine, TENANT) == 0


async def test_the_catalogue_can_write(client: httpx.AsyncClient, db_engine: AsyncEngine) -> None:
    """The baseline of the catalogue is a valid request: it is each bad part that is refused."""
    tenant = new_tenant()
    response = await client.post("/v1/messages", content=encoded(tenant_id=tenant), headers=JSON)
    assert response.status_code == 200, response.text
    assert await count_rows(db_engine, tenant) == 1


async def test_extreme_valid_values_are_stored_and_searched(client: httpx.AsyncClient) -> None:
    """Valid edges the contract test found as 500s: a subnormal importance (the score's product
    underflowed) and a message from the year 409 (its recency underflowed)."""
    tenant = new_tenant()
    for extra in ({"importance_override": 5e-324}, {"created_at": "0409-03-21T22:17:16+02:16"}):
        response = await client.post("/v1/messages", content=encoded(tenant_id=tenant, **extra),
                                      headers=JSON)
        assert response.status_code == 200, response.text
    for mode in ("hybrid", "keyword", "vector"):
        search = await client.post(
            "/v1/memory/search", json={"tenant_id": tenant, "query": "hello", "mode": mode}
        )
        assert search.status_code == 200, search.text
        assert search.json()["total"] == 2
