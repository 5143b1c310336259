"""JSON's types as the document gives them, on every route: read from the served document, so
routes added later are covered too.

- every integer and number field of every JSON body refuses `true` (and integers refuse `"5"`):
  a boolean is no quota of 0 bytes;
- every timestamp, in a body or a query string, refuses a number: the document says RFC 3339;
- a path some route serves answers 405 with `Allow` to another method, whatever other routes'
  parameters could read it as;
- what the document declares for GET search's `metadata` (JSON text of an object) is accepted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.app import ADMIN_KEY, AppClient
from tests.fixtures.tenants import new_tenant

TENANT = new_tenant()
Path = list[str | int]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def _fields(
    document: dict[str, Any], schema: dict[str, Any], path: Path, depth: int = 0
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every (path, schema) of a body's schema, through objects, arrays, maps and anyOf."""
    schema = _resolve(document, schema)
    yield path, schema
    if depth > 6:
        return
    for branch in schema.get("anyOf", []):
        yield from _fields(document, branch, path, depth + 1)
    for name, inner in schema.get("properties", {}).items():
        yield from _fields(document, inner, [*path, name], depth + 1)
    if isinstance(schema.get("items"), dict):
        yield from _fields(document, schema["items"], [*path, 0], depth + 1)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and extra:
        keys = _resolve(document, schema.get("propertyNames", {}))
        key = keys["enum"][0] if "enum" in keys else "k"
        yield from _fields(document, extra, [*path, key], depth + 1)


def _body_with(path: Path, value: Any) -> Any:
    """A body holding `value` at `path` (lists of one item, objects of one key)."""
    for step in reversed(path):
        value = [value] if isinstance(step, int) else {step: value}
    return value


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def _url(path: str) -> str:
    filled = {
        "{message_id}": str(uuid.uuid4()), "{tenant_id}": TENANT, "{user_id}": "someone",
        "{key_id}": str(uuid.uuid4()),
    }
    for name, value in filled.items():
        path = path.replace(name, value)
    while "{" in path:  # any other identifier
        start, end = path.index("{"), path.index("}")
        path = path[:start] + "some-id" + path[end + 1:]
    return path


def _tenant_query(path: str) -> dict[str, str]:
    """Tenant routes name the tenant in the query (bodies are checked apart from it)."""
    return {} if path.startswith("/v1/admin/") else {"tenant_id": TENANT}


def _refused_at(response: httpx.Response, loc: list[Any]) -> bool:
    if response.status_code != 422 or response.json().get("error") != "validation_error":
        return False
    return any(error["loc"][: len(loc)] == loc for error in response.json()["detail"])


@pytest.fixture
async def document(client: AppClient) -> dict[str, Any]:
    answer = await client.get("/openapi.json")
    assert answer.status_code == 200
    spec: dict[str, Any] = answer.json()
    return spec


async def test_every_number_of_every_body_refuses_a_boolean(
    client: AppClient, document: dict[str, Any]
) -> None:
    checked: list[str] = []
    accepted: list[str] = []
    for method, path, operation in _operations(document):
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" not in content:
            continue
        for field_path, schema in _fields(document, content["application/json"]["schema"], []):
            if schema.get("type") not in ("integer", "number") or not field_path:
                continue
            probes: list[Any] = [True, False]
            if schema["type"] == "integer":
                probes.append("5")
            for probe in probes:
                body = _body_with(field_path, probe)
                response = await client.request(
                    method, _url(path), json=body, params=_tenant_query(path)
                )
                label = f"{method} {path} {field_path} = {probe!r}"
                checked.append(label)
                if not _refused_at(response, ["body", *field_path]):
                    accepted.append(f"{label} -> {response.status_code} {response.text[:200]}")
    assert accepted == []
    # The policy's quotas and ages, the batch items' numbers, search, retention, state TTLs.
    assert any("max_state_bytes" in label for label in checked)
    assert any("'messages', 0" in label for label in checked)
    assert len(checked) >= 40


async def test_every_timestamp_refuses_a_number(
    client: AppClient, document: dict[str, Any]
) -> None:
    checked: list[str] = []
    accepted: list[str] = []
    for method, path, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            schema = _resolve(document, parameter.get("schema", {}))
            branches = [schema, *[_resolve(document, b) for b in schema.get("anyOf", [])]]
            if parameter["in"] != "query" or not any(
                b.get("format") == "date-time" for b in branches
            ):
                continue
            name = parameter["name"]
            for text in ("0.5", "1700000000"):
                response = await client.request(
                    method, _url(path), params={"tenant_id": TENANT, name: text}
                )
                checked.append(f"{method} {path}?{name}={text}")
                if not _refused_at(response, ["query", name]):
                    accepted.append(f"{checked[-1]} -> {response.status_code} {response.text[:200]}")
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" not in content:
            continue
        for field_path, schema in _fields(document, content["application/json"]["schema"], []):
            if schema.get("format") != "date-time" or not field_path:
                continue
            for probe in (0.5, 1_700_000_000):
                response = await client.request(
                    method, _url(path), json=_body_with(field_path, probe), params=_tenant_query(path)
                )
                checked.append(f"{method} {path} {field_path} = {probe}")
                if not _refused_at(response, ["body", *field_path]):
                    accepted.append(f"{checked[-1]} -> {response.status_code} {response.text[:200]}")
    assert accepted == []
    assert "GET /v1/admin/audit?since=0.5" in checked
    assert any("expires_at" in label for label in checked)


async def test_the_audit_since_and_a_policy_boolean_named_in_the_issue(client: AppClient) -> None:
    since = await client.get("/v1/admin/audit", params={"since": "0.5"})
    assert since.status_code == 422
    assert since.json()["detail"][0]["loc"] == ["query", "since"]
    assert (await client.get("/v1/admin/audit", params={"since": "2026-01-31T12:00:00Z"})).status_code == 200
    policy = await client.put(f"/v1/admin/tenants/{TENANT}/policy", json={"max_state_bytes": False})
    assert policy.status_code == 422
    assert policy.json()["detail"][0]["loc"] == ["body", "max_state_bytes"]
    allowed = await client.put(f"/v1/admin/tenants/{TENANT}/policy", json={"max_state_bytes": 0})
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["overrides"]["max_state_bytes"] == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
async def test_another_method_on_the_batch_path_is_405_with_allow(
    client: AppClient, method: str
) -> None:
    response = await client.request(
        method, "/v1/messages/batch", params={"tenant_id": TENANT},
        json={"content": "x"} if method in ("PUT", "PATCH") else None,
    )
    assert response.status_code == 405, response.text
    assert response.json()["error"] == "method_not_allowed"
    assert response.headers["Allow"] == "POST"


async def test_a_message_id_still_reaches_its_routes(client: AppClient) -> None:
    stored = await client.post("/v1/messages", json={
        "tenant_id": TENANT, "conversation_id": "c", "role": "user", "content": "batch",
    })
    assert stored.status_code == 200, stored.text
    message_id = stored.json()["message_id"]
    read = await client.get(f"/v1/messages/{message_id}", params={"tenant_id": TENANT})
    assert read.status_code == 200
    # Upper case is a UUID too; anything else is still the 422 of a bad id, not a 404.
    upper = await client.get(f"/v1/messages/{message_id.upper()}", params={"tenant_id": TENANT})
    assert upper.status_code == 200
    bad = await client.get("/v1/messages/batchx", params={"tenant_id": TENANT})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["path", "message_id"]
    metrics = (await client.get("/metrics")).text
    assert 'route="/v1/messages/{message_id}"' in metrics


async def test_search_metadata_is_declared_as_json_and_accepted_as_declared(
    client: AppClient, document: dict[str, Any]
) -> None:
    parameters = document["paths"]["/v1/memory/search"]["get"]["parameters"]
    metadata = next(p for p in parameters if p["name"] == "metadata")
    assert "schema" not in metadata
    assert metadata["content"]["application/json"]["schema"]["type"] == "object"
    stored = await client.post("/v1/messages", json={
        "tenant_id": TENANT, "conversation_id": "c", "role": "user", "content": "my parrot",
        "metadata": {"topic": "pets"},
    })
    assert stored.status_code == 200, stored.text
    found = await client.get("/v1/memory/search", params={
        "tenant_id": TENANT, "query": "parrot", "metadata": json.dumps({"topic": "pets"}),
    })
    assert found.status_code == 200, found.text
    assert [item["content"] for item in found.json()["items"]] == ["my parrot"]
    # Text that is not the JSON of an object is outside the document: 422.
    for text in ("", "pets", "[1]"):
        refused = await client.get("/v1/memory/search", params={
            "tenant_id": TENANT, "query": "parrot", "metadata": text,
        })
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["query", "metadata"]


async def test_retention_runs_with_no_body_by_the_tenants_policies(client: AppClient) -> None:
    """What cron's `curl -X POST` sends: no body, no content type."""
    response = await client.post(
        "/v1/admin/retention/run", headers={"X-API-Key": ADMIN_KEY, "Content-Type": ""}
    )
    assert response.status_code == 200, response.text
    assert response.json()["by_policy"] is True
    assert response.json()["dry_run"] is False
    with_body = await client.post("/v1/admin/retention/run", json={"dry_run": True})
    assert with_body.status_code == 200
    assert with_body.json()["dry_run"] is True


async def test_a_merge_patch_that_is_no_object_is_422_whatever_the_preconditions(
    client: AppClient,
) -> None:
    """The document declares the patch an object: `0.6` is refused as such, before `If-Match`
    is compared with a state that may not exist (found with more generated examples)."""
    for headers in ({}, {"If-Match": "null"}):
        response = await client.patch(
            "/v1/conversations/no-state/state", params={"tenant_id": TENANT}, content=b"0.6",
            headers={"Content-Type": "application/merge-patch+json", **headers},
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid_state"
