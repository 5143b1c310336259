"""The channel routes: register, read, list, delete; names, fields and types checked; admin
only; the JSON Schema of the YAML file."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.channels.helpers import put_channel
from tests.fixtures.app import AppClient
from tests.fixtures.tenants import new_tenant, tenant_key


async def test_register_read_list_replace_and_delete(client: AppClient, tenant: str) -> None:
    created = await put_channel(
        client, tenant, "working", ttl_sec=3600, quota_bytes=1000, pii="require_encryption"
    )
    assert {k: created[k] for k in ("name", "ttl_sec", "encrypt", "quota_bytes", "pii")} == {
        "name": "working", "ttl_sec": 3600, "encrypt": False, "quota_bytes": 1000,
        "pii": "require_encryption",
    }
    await put_channel(client, tenant, "procedure", encrypt=True)
    one = await client.get(f"/v1/admin/tenants/{tenant}/channels/working")
    assert one.status_code == 200
    assert one.json()["ttl_sec"] == 3600
    page = await client.get(f"/v1/admin/tenants/{tenant}/channels", params={"limit": 1})
    assert [c["name"] for c in page.json()["items"]] == ["procedure"]
    rest = await client.get(
        f"/v1/admin/tenants/{tenant}/channels", params={"cursor": page.json()["next_cursor"]}
    )
    assert [c["name"] for c in rest.json()["items"]] == ["working"]
    replaced = await put_channel(client, tenant, "working", ttl_sec=60)
    assert (replaced["ttl_sec"], replaced["quota_bytes"], replaced["pii"]) == (60, None, "allow")
    deleted = await client.delete(f"/v1/admin/tenants/{tenant}/channels/working")
    assert deleted.status_code == 204
    gone = await client.get(f"/v1/admin/tenants/{tenant}/channels/working")
    assert gone.status_code == 404
    assert gone.json()["error"] == "channel_not_found"
    again = await client.delete(f"/v1/admin/tenants/{tenant}/channels/working")
    assert again.status_code == 404
    # Another tenant sees none of them.
    other = await client.get(f"/v1/admin/tenants/{new_tenant()}/channels")
    assert other.json()["items"] == []


async def test_names_fields_and_types_are_checked(client: AppClient, tenant: str) -> None:
    base = f"/v1/admin/tenants/{tenant}/channels"
    for name in ("Working", "1st", "with-dash", "x" * 51):
        response = await client.put(f"{base}/{name}", json={})
        assert response.status_code == 422, (name, response.text)
    for name in ("admin", "system", "internal", "redis", "audit"):
        response = await client.put(f"{base}/{name}", json={})
        assert response.status_code == 422, name
        assert response.json()["error"] == "invalid_channel_name"
    assert (await client.put(f"{base}/{'x' * 50}", json={})).status_code == 200
    for body, field in (
        ({"ttl_sec": 59}, "ttl_sec"),
        ({"ttl_sec": 604_801}, "ttl_sec"),
        ({"ttl_sec": "3600"}, "ttl_sec"),
        ({"encrypt": "yes"}, "encrypt"),
        ({"quota_bytes": 0}, "quota_bytes"),
        ({"pii": "sometimes"}, "pii"),
        ({"colour": "red"}, "colour"),
    ):
        response = await client.put(f"{base}/working", json=body)
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"] == ["body", field], response.text


async def test_admin_only(client: AppClient, db_engine: AsyncEngine, tenant: str) -> None:
    key = await tenant_key(db_engine, tenant)
    headers = {"X-API-Key": key}
    for method, path in (
        ("GET", f"/v1/admin/tenants/{tenant}/channels"),
        ("PUT", f"/v1/admin/tenants/{tenant}/channels/working"),
        ("GET", f"/v1/admin/tenants/{tenant}/channels/working"),
        ("DELETE", f"/v1/admin/tenants/{tenant}/channels/working"),
        ("GET", "/v1/admin/channels/schema"),
    ):
        response = await client.request(method, path, headers=headers, json={})
        assert response.status_code == 403, (method, path, response.text)


async def test_the_schema_route_publishes_the_yaml_schema(client: AppClient) -> None:
    response = await client.get("/v1/admin/channels/schema")
    assert response.status_code == 200
    schema = response.json()
    assert schema["additionalProperties"] is False
    fields = schema["$defs"]["ChannelFields"]
    assert fields["additionalProperties"] is False
    assert set(fields["properties"]) == {"ttl_sec", "encrypt", "quota_bytes", "pii"}
    channels = schema["properties"]["channels"]
    assert list(channels["patternProperties"]) == ["^[a-z][a-z0-9_]*$"]
    assert channels["propertyNames"]["maxLength"] == 50
    assert channels["propertyNames"]["not"]["enum"] == ["admin", "audit", "internal", "redis", "system"]
