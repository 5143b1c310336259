"""The worker's log lines about a message carry the X-Request-ID of the request that stored it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from memory_layer.embeddings.worker import EmbeddingWorker
from memory_layer.kit.observability.metrics import Metrics
from tests.embeddings.queue import CountingProvider, worker_settings
from tests.fixtures.app import ADMIN_KEY, running_client
from tests.support.logs import captured_logs


async def test_worker_lines_carry_the_request_id_of_each_message(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], worker_database_url: str
) -> None:
    settings = worker_settings(
        worker_database_url, async_embeddings=True, embedding_max_attempts=1
    )
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        ids = {}
        for request_id, content in (("req-good", "a fine text"), ("req-poison", "a POISON text")):
            response = await client.post(
                "/v1/messages",
                json={"tenant_id": "t-logs", "conversation_id": "c", "role": "user", "content": content},
                headers={"X-Request-ID": request_id},
            )
            assert response.status_code == 202
            ids[request_id] = response.json()["message_id"]
        batch = await client.post(
            "/v1/messages/batch",
            json={"tenant_id": "t-logs", "messages": [
                {"conversation_id": "c", "role": "user", "content": "batched text"}
            ]},
            headers={"X-Request-ID": "req-batch"},
        )
        ids["req-batch"] = batch.json()["items"][0]["message_id"]
    worker = EmbeddingWorker(engine, sessionmaker, CountingProvider(poison="POISON"), settings, Metrics())
    with captured_logs() as logs:
        outcome = await worker.run_once()
    assert (outcome.ready, outcome.failed) == (2, 1)
    embedded = {line["message_id"]: line for line in logs.named("message embedded")}
    assert embedded[ids["req-good"]]["request_id"] == "req-good"
    assert embedded[ids["req-batch"]]["request_id"] == "req-batch"
    assert embedded[ids["req-good"]]["tenant_id"] == "t-logs"
    (failed,) = logs.named("message failed to embed for good; see embedding_error")
    assert (failed["message_id"], failed["request_id"]) == (ids["req-poison"], "req-poison")
    assert failed["level"] == "warning"
    assert failed["error_kind"] == "invalid_input"
    assert "POISON" not in logs.text
    assert "fine text" not in logs.text
