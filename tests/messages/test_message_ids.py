"""Turns that share a timestamp (a session imported with the session's time) keep the order they
were written in: message ids are time-ordered (kit/ids.py), and every listing orders ties by id."""

from __future__ import annotations

import uuid

import httpx

from memory_layer.kit.ids import new_id
from tests.fixtures.messages import message_body, remember

SESSION_TIME = "2023-05-08T13:56:00+00:00"
TURNS = [f"turn {index}: {word}" for index, word in enumerate(
    ["hello", "how was the concert", "loud and great", "which band", "the local jazz trio",
     "nice", "see you", "bye"]
)]


def test_ids_grow_in_the_order_they_are_made() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(isinstance(value, uuid.UUID) and value.version == 7 for value in ids)


async def history(client: httpx.AsyncClient, tenant: str, conversation: str) -> list[str]:
    response = await client.get(
        f"/v1/conversations/{conversation}/messages", params={"tenant_id": tenant, "limit": 100}
    )
    assert response.status_code == 200, response.text
    return [item["content"] for item in response.json()["items"]]


async def test_single_writes_sharing_a_time_come_back_in_writing_order(
    client: httpx.AsyncClient, tenant: str
) -> None:
    for content in TURNS:
        await remember(client, tenant, content, conversation_id="s1", created_at=SESSION_TIME)
    assert await history(client, tenant, "s1") == TURNS


async def test_a_batch_sharing_a_time_comes_back_in_its_order(
    client: httpx.AsyncClient, tenant: str
) -> None:
    items = [
        {k: v for k, v in message_body(tenant, content, conversation_id="s2",
                                       created_at=SESSION_TIME).items() if k != "tenant_id"}
        for content in TURNS
    ]
    response = await client.post("/v1/messages/batch", json={"tenant_id": tenant, "messages": items})
    assert response.status_code in (200, 202), response.text
    assert await history(client, tenant, "s2") == TURNS


async def test_the_answer_after_a_question_in_the_same_second_follows_it(
    client: httpx.AsyncClient, tenant: str
) -> None:
    # Answer expansion brings "the next turn" after a question that matched: with ties ordered by
    # writing, that is the reply that was written after it, not any turn of the session.
    for content in ["Which band did you see at the concert?", "The local jazz trio, Blue Lanterns.",
                    *[f"filler turn number {n} about nothing" for n in range(30)]]:
        await remember(client, tenant, content, conversation_id="s3", created_at=SESSION_TIME)
    response = await client.get("/v1/memory/search", params={
        "tenant_id": tenant, "query": "Which band did you see at the concert?",
        "conversation_id": "s3", "top_k": 2,
    })
    assert response.status_code == 200, response.text
    contents = [item["content"] for item in response.json()["items"]]
    assert contents == ["Which band did you see at the concert?", "The local jazz trio, Blue Lanterns."]
