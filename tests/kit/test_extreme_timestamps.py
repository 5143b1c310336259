"""Python's first and last instants are refused: asyncpg would store them as -infinity and
infinity and read them back as naive datetimes."""

from __future__ import annotations

from tests.fixtures.app import AppClient


async def test_first_and_last_instants_are_refused(client: AppClient, tenant: str) -> None:
    for instant in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"):
        refused = await client.post(
            "/v1/runs",
            json={"tenant_id": tenant, "flow_name": "f", "status": "running", "started_at": instant},
        )
        assert refused.status_code == 422, refused.text
        assert "-infinity and infinity" in refused.text
    kept = await client.post(
        "/v1/messages",
        json={"tenant_id": tenant, "conversation_id": "c", "role": "user", "content": "old",
              "created_at": "0001-01-01T00:00:00.000001Z"},
    )
    assert kept.status_code == 200, kept.text
    assert kept.json()["created_at"] == "0001-01-01T00:00:00.000001Z"
