"""Setting a tenant's policy through the admin route, for the tests of any domain."""

from __future__ import annotations

from typing import Any

import httpx


async def set_policy(client: httpx.AsyncClient, tenant: str, **fields: Any) -> dict[str, Any]:
    """PUT the tenant's overrides (an admin client); the response body."""
    response = await client.put(f"/v1/admin/tenants/{tenant}/policy", json=fields)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
