"""Read-your-writes: a message still waiting for its embedding is found by keyword at once."""

from __future__ import annotations

from collections.abc import Callable

from memory_layer.config import Settings
from tests.fixtures.app import ADMIN_KEY, running_client


async def test_a_pending_message_is_found_by_keyword_right_after_the_write(
    settings_factory: Callable[..., Settings], tenant: str
) -> None:
    settings = settings_factory(async_embeddings=True)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        for content in ("My passport number is X7781234", "I like long walks on the beach"):
            response = await client.post(
                "/v1/messages",
                json={"tenant_id": tenant, "conversation_id": "c", "role": "user",
                      "content": content},
            )
            assert response.status_code == 202
        for mode in ("hybrid", "keyword"):
            found = await client.post(
                "/v1/memory/search",
                json={"tenant_id": tenant, "query": "passport number", "mode": mode},
            )
            assert found.status_code == 200, found.text
            items = found.json()["items"]
            assert [item["content"] for item in items] == ["My passport number is X7781234"]
            assert items[0]["embedding_status"] == "pending"
            assert items[0]["explanation"]["keyword_rank"] == 1
            assert items[0]["explanation"]["vector_rank"] is None
        blind = await client.post(
            "/v1/memory/search",
            json={"tenant_id": tenant, "query": "passport number", "mode": "vector"},
        )
        assert blind.json()["items"] == []
