"""Registering a tenant's channels through the admin route, for the tests of channels."""

from __future__ import annotations

from typing import Any

import httpx


async def put_channel(
    client: httpx.AsyncClient, tenant: str, name: str, **fields: Any
) -> dict[str, Any]:
    """PUT one channel (an admin client); the response body."""
    response = await client.put(f"/v1/admin/tenants/{tenant}/channels/{name}", json=fields)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
