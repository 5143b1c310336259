"""The embedding worker on real PostgreSQL: claiming, leases, retries, NOTIFY, kills, the serving worker.

These tests own a database of their own (tests/embeddings/conftest.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from memory_layer.embeddings.repository import EmbeddingJobRepository
from memory_layer.embeddings.worker import backoff_seconds
from tests.embeddings.queue import (
    CountingProvider,
    all_due,
    insert_pending,
    make_worker,
    statuses,
    worker_settings,
)
from tests.fixtures.app import ADMIN_KEY, make_settings, running_client
from tests.support.metrics import sample_value, scrape
from tests.support.waiting import wait_until


async def test_concurrent_workers_never_embed_a_row_twice(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], worker_database_url: str
) -> None:
    texts = [f"message {i} about topic {i % 17}" for i in range(400)]
    await insert_pending(engine, texts)
    settings = worker_settings(worker_database_url)
    providers = [CountingProvider(delay=0.01) for _ in range(4)]
    workers = [make_worker(engine, sessionmaker, p, settings) for p in providers]
    await asyncio.gather(*(worker.drain() for worker in workers))

    total: Counter[str] = Counter()
    for provider in providers:
        total.update(provider.calls)
    assert set(total) == set(texts)
    assert max(total.values()) == 1, "a row was embedded twice"
    assert sum(1 for p in providers if p.calls) > 1, "the test needs workers to overlap"
    rows = await statuses(engine)
    assert {row["embedding_status"] for row in rows.values()} == {"ready"}
    assert all(row["has_vector"] and row["embedding_lease_owner"] is None for row in rows.values())
    assert {row["embedding_model"] for row in rows.values()} == {"fake-hash-384"}


async def test_poison_message_fails_after_max_attempts_and_can_be_requeued(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], worker_database_url: str
) -> None:
    texts = [f"ordinary note {i}" for i in range(9)] + ["POISON pill"]
    await insert_pending(engine, texts)
    settings = worker_settings(worker_database_url, embedding_max_attempts=3)
    provider = CountingProvider(poison="POISON")
    worker = make_worker(engine, sessionmaker, provider, settings)

    async def poison_given_up() -> bool:
        await worker.drain()  # whatever is due now; the back-off is 0.05..0.2 s in these settings
        return bool((await statuses(engine))["POISON pill"]["embedding_status"] == "failed")

    await wait_until(poison_given_up, message="the poison message never failed for good")

    rows = await statuses(engine)
    poison = rows.pop("POISON pill")
    assert poison["embedding_status"] == "failed"
    assert poison["embedding_attempts"] == 3
    assert poison["embedding_error"] == "invalid_input: cannot embed POISON"
    # The batch was split, so the poison never took its neighbours down with it.
    assert {row["embedding_status"] for row in rows.values()} == {"ready"}
    assert worker.metrics.registry.get_sample_value("memory_worker_messages_failed_total") == 1

    # The queue of the turns' own vectors only (no context_pending count).
    settings_api = make_settings(worker_database_url, context_vectors="off")
    async with running_client(settings_api, headers={"X-API-Key": ADMIN_KEY}) as client:
        queue = await client.get("/v1/admin/embeddings")
        assert queue.json() == {
            "tenant_id": None, "pending": 0, "failed": 1, "context_pending": None
        }
        metrics = await scrape(client)
        assert sample_value(metrics, "memory_embedding_queue_messages", {"status": "failed"}) == 1.0
        requeued = await client.post("/v1/admin/embeddings/requeue", json={"tenant_id": "t-worker"})
        assert requeued.status_code == 200, requeued.text
        assert requeued.json() == {"requeued": 1}
    row = (await statuses(engine))["POISON pill"]
    assert (row["embedding_status"], row["embedding_attempts"]) == ("pending", 0)

    provider.poison = None  # the provider was fixed
    assert await worker.drain() == 1
    assert (await statuses(engine))["POISON pill"]["embedding_status"] == "ready"


async def test_rate_limits_back_off_without_spending_attempts(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], worker_database_url: str
) -> None:
    await insert_pending(engine, ["hello there", "general kenobi"])
    settings = worker_settings(
        worker_database_url, embedding_max_attempts=1, embedding_retry_base_seconds=30
    )
    provider = CountingProvider(poison="", kind="rate_limited")  # every call is refused
    worker = make_worker(engine, sessionmaker, provider, settings)
    outcome = await worker.run_once()
    assert (outcome.claimed, outcome.ready, outcome.retrying, outcome.failed) == (2, 0, 2, 0)
    rows = await statuses(engine)
    assert {r["embedding_status"] for r in rows.values()} == {"pending"}
    assert {r["embedding_attempts"] for r in rows.values()} == {0}
    assert {r["embedding_error"] for r in rows.values()} == {"rate_limited: cannot embed "}
    # Backed off: nothing is due now, so a second pass claims nothing.
    assert (await worker.run_once()).claimed == 0


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    import random

    rng = random.Random(1)
    waits = [backoff_seconds(attempt, 2.0, 60.0, rng) for attempt in range(1, 8)]
    for attempt, wait in enumerate(waits, start=1):
        step = min(60.0, 2.0 * 2 ** (attempt - 1))
        assert step / 2 <= wait <= step
    assert waits[-1] <= 60.0


async def test_an_expired_lease_is_taken_over_and_the_old_owner_cannot_write(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], worker_database_url: str
) -> None:
    await insert_pending(engine, ["claimed by a worker that froze"])
    settings = worker_settings(worker_database_url, worker_lease_seconds=0.3)
    frozen = make_worker(engine, sessionmaker, CountingProvider(), settings)
    async with sessionmaker.begin() as session:
        jobs = await EmbeddingJobRepository(session).claim(frozen.owner, 10, 0.3)
    assert len(jobs) == 1
    rescuer = make_worker(engine, sessionmaker, CountingProvider(), settings)
    assert (await rescuer.run_once()).claimed == 0  # leased: not due yet
    await wait_until(lambda: all_due(engine), message="the frozen worker's 0.3 s lease never ran out")
    outcome = await rescuer.run_once()
    assert (outcome.claimed, outcome.ready) == (1, 1)
    async with sessionmaker.begin() as session:
        written = await EmbeddingJobRepository(session).complete(
            frozen.owner, "stale-model", [(jobs[0], [0.0] * 384)]
        )
    assert written == set()
    row = (await statuses(engine))["claimed by a worker that froze"]
    assert (row["embedding_model"], row["embedding_attempts"]) == ("fake-hash-384", 2)


async def test_notify_wakes_a_sleeping_worker_long_before_its_poll(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], worker_database_url: str
) -> None:
    settings = worker_settings(worker_database_url, worker_poll_seconds=60)
    worker = make_worker(engine, sessionmaker, CountingProvider(), settings)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(worker.listening.wait(), 10)
        # Give the worker time to find the queue empty and fall asleep (poll: 60 s). A plain sleep
        # on purpose: the worker has no observable "asleep" state, and no count depends on it (a
        # worker still awake would pick the row up all the same).
        await asyncio.sleep(0.2)
        assert (await statuses(engine)) == {}
        await insert_pending(engine, ["wake up"])

        async def woken() -> bool:
            return bool((await statuses(engine))["wake up"]["embedding_status"] == "ready")

        # Well inside the 60 s poll interval, so only the NOTIFY can have woken it.
        await wait_until(woken, timeout=10, message="the NOTIFY did not wake the worker")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_graceful_stop_finishes_the_batch_in_hand(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], worker_database_url: str
) -> None:
    await insert_pending(engine, [f"slow {i}" for i in range(40)])
    settings = worker_settings(worker_database_url, worker_batch_size=10)
    provider = CountingProvider(delay=0.5)
    worker = make_worker(engine, sessionmaker, provider, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await wait_until(provider.entered.is_set, message="the worker never started a batch")
    stop.set()  # inside the first batch's model call (0.5 s)
    await asyncio.wait_for(task, 10)
    rows = await statuses(engine)
    counts = Counter(row["embedding_status"] for row in rows.values())
    assert counts == {"ready": 10, "pending": 30}
    assert all(row["embedding_lease_owner"] is None for row in rows.values())


async def test_cancelled_worker_hands_its_batch_back(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], worker_database_url: str
) -> None:
    await insert_pending(engine, [f"slow {i}" for i in range(5)])
    settings = worker_settings(worker_database_url)
    provider = CountingProvider(delay=5)
    worker = make_worker(engine, sessionmaker, provider, settings)
    task = asyncio.create_task(worker.run_once())
    await wait_until(provider.entered.is_set, message="the worker never started a batch")
    task.cancel()  # while the claimed batch is in the model call (5 s)
    with pytest.raises(asyncio.CancelledError):
        await task
    rows = await statuses(engine)
    assert {(r["embedding_status"], r["embedding_attempts"]) for r in rows.values()} == {
        ("pending", 0)
    }
    assert all(r["embedding_lease_owner"] is None for r in rows.values())
    # Handed back, not left to the lease: due at once.
    assert (await make_worker(engine, sessionmaker, CountingProvider(), settings).drain()) == 5


async def test_a_worker_killed_mid_batch_loses_nothing(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], worker_database_url: str
) -> None:
    texts = [f"kill test message {i}" for i in range(200)]
    await insert_pending(engine, texts)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")},
        "MEMORY_DATABASE_URL": worker_database_url,
        "MEMORY_EMBEDDING_PROVIDER": "fake",
        "MEMORY_FAKE_EMBEDDING_DELAY_MS": "300",
        "MEMORY_WORKER_BATCH_SIZE": "20",
        "MEMORY_WORKER_LEASE_SECONDS": "1",
        "MEMORY_API_KEYS": "k",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "memory_layer.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        async def mid_batch() -> bool:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            rows = await statuses(engine)
            ready = sum(r["embedding_status"] == "ready" for r in rows.values())
            leased = any(r["embedding_lease_owner"] is not None for r in rows.values())
            return ready >= 20 and leased

        await wait_until(mid_batch, timeout=30, message="the worker never held a second batch")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)

    rows = await statuses(engine)
    stranded = [r for r in rows.values() if r["embedding_lease_owner"] is not None]
    assert stranded, "killed mid-batch: its rows are still leased"
    assert len(rows) == 200
    # A new worker finishes everything once the dead worker's lease (1 s) has run out.
    settings = worker_settings(worker_database_url, worker_batch_size=50)
    provider = CountingProvider()
    rescuer = make_worker(engine, sessionmaker, provider, settings)

    async def all_ready() -> bool:
        await rescuer.drain()  # whatever is due now; the stranded rows once their lease ends
        return all(r["embedding_status"] == "ready" for r in (await statuses(engine)).values())

    await wait_until(all_ready, interval=0.1, message="the stranded rows were never finished")
    rows = await statuses(engine)
    assert len(rows) == 200
    assert {r["embedding_status"] for r in rows.values()} == {"ready"}
    assert all(r["has_vector"] for r in rows.values())
    assert set(provider.calls) >= {r["content"] for r in stranded}


async def test_serve_answers_202_and_its_worker_makes_the_message_ready(
    engine: AsyncEngine, worker_database_url: str, tenant: str
) -> None:
    settings = make_settings(
        worker_database_url, async_embeddings=True, worker_enabled=True, worker_batch_wait_ms=0
    )
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        await asyncio.wait_for(client.worker.listening.wait(), 10)
        response = await client.post(
            "/v1/messages",
            json={"tenant_id": tenant, "conversation_id": "c", "role": "user",
                  "content": "The invoice number is INV-20931"},
        )
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["embedding_status"] == "pending"
        assert response.headers["Location"] == body["status_url"]
        registry = client.metrics.registry

        async def embedded() -> bool:
            status = await client.get(body["status_url"], params={"tenant_id": tenant})
            # The worker records its batch in the metrics right after it commits the row.
            batches = registry.get_sample_value("memory_worker_batch_messages_count")
            return bool(status.json()["embedding_status"] == "ready" and batches)

        await wait_until(embedded, message="the serving worker never embedded the message")
        status = (await client.get(body["status_url"], params={"tenant_id": tenant})).json()
        assert status["embedding_model"] == "fake-hash-384"
        assert status["embedding_attempts"] == 1
        assert status["embedded_at"] is not None
        metrics = await scrape(client)
        model = {"model": "fake-hash-384"}
        assert sample_value(metrics, "memory_worker_embeddings_total", model) == 1.0
        assert sample_value(metrics, "memory_worker_batch_messages_count") == 1.0
        assert sample_value(metrics, "memory_worker_batch_duration_seconds_count") == 1.0
        assert sample_value(metrics, "memory_embedding_queue_messages", {"status": "pending"}) == 0.0


async def test_requeue_needs_admin_rights(worker_database_url: str, engine: AsyncEngine) -> None:
    settings = make_settings(worker_database_url)
    async with running_client(settings, headers={"X-API-Key": "test-service-key"}) as client:
        response = await client.post("/v1/admin/embeddings/requeue", json={})
        assert response.status_code == 403
        assert response.json()["error"] == "insufficient_scope"



class LockingProvider(CountingProvider):
    """After its first batch, holds a row lock on that batch's rows, so its write must wait."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__()
        self.engine = engine
        self.batches: list[list[str]] = []
        self.lock_held = asyncio.Event()
        self.release = asyncio.Event()
        self.holder: asyncio.Task[None] | None = None

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.batches.append(texts)
        if len(self.batches) == 1:
            self.holder = asyncio.create_task(self._hold(texts))
            await asyncio.wait_for(self.lock_held.wait(), 10)
        return await super().embed_documents(texts)

    async def _hold(self, texts: list[str]) -> None:
        async with self.engine.connect() as connection, connection.begin():
            await connection.execute(
                text("SELECT 1 FROM messages WHERE content = ANY(:texts) FOR UPDATE"),
                {"texts": texts},
            )
            self.lock_held.set()
            await asyncio.wait_for(self.release.wait(), 20)


async def test_next_batch_is_in_the_model_while_the_previous_one_is_written(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], worker_database_url: str
) -> None:
    await insert_pending(engine, [f"overlap {i}" for i in range(12)])
    # Batches of the turns' own texts only (no context vectors between them).
    settings = worker_settings(worker_database_url, worker_batch_size=4, context_vectors="off")
    provider = LockingProvider(engine)
    worker = make_worker(engine, sessionmaker, provider, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        # The first batch's write is blocked by the lock; a second model call can only come from
        # a worker that does not wait for that write.
        await wait_until(lambda: len(provider.batches) >= 2, timeout=10,
                         message="the worker waited for the first write before the next model call")
        first = set(provider.batches[0])
        assert all(
            rows["embedding_status"] == "pending"
            for content, rows in (await statuses(engine)).items() if content in first
        )
    finally:
        provider.release.set()
    assert provider.holder is not None
    await asyncio.wait_for(provider.holder, 10)
    await wait_until(
        lambda: sum(len(batch) for batch in provider.batches) >= 12, timeout=10,
        message="the worker did not finish the queue",
    )

    async def all_ready() -> bool:
        return all(row["embedding_status"] == "ready" for row in (await statuses(engine)).values())

    await wait_until(all_ready, timeout=10, message="rows left unwritten")
    stop.set()
    await asyncio.wait_for(task, 10)
    embedded = sorted(c for batch in provider.batches for c in batch)
    assert embedded == sorted(f"overlap {i}" for i in range(12))
