"""Two API processes and two workers on one PostgreSQL and one Redis, as a scaled-out deployment
runs: the tenant limit holds across the APIs, a write through one is found by a search through the
other, and no message is embedded twice."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from memory_layer.kit.db.engine import create_engine
from memory_layer.kit.db.migrations import upgrade_to_head
from tests.fixtures.database import DatabaseServer
from tests.fixtures.tenants import new_tenant, tenant_key
from tests.support.cli import free_port, wait_healthy
from tests.support.waiting import wait_until

ADMIN = "scale-out-admin"
TENANT_LIMIT = 5
MESSAGES = 20


class Deployment:
    def __init__(self, database_url: str, redis_url: str, logs: Path) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")},
            "MEMORY_DATABASE_URL": database_url,
            "MEMORY_REDIS_URL": redis_url,
            "MEMORY_REDIS_KEY_PREFIX": f"scale-{uuid.uuid4().hex[:8]}",
            "MEMORY_ADMIN_API_KEYS": ADMIN,
            "MEMORY_EMBEDDING_PROVIDER": "fake",
            "MEMORY_ASYNC_EMBEDDINGS": "true",
            "MEMORY_WORKER_ENABLED": "false",
            "MEMORY_WORKER_BATCH_SIZE": "4",
            "MEMORY_FAKE_EMBEDDING_DELAY_MS": "20",
            "MEMORY_GLOBAL_RATE_LIMIT": "off",
            "MEMORY_TENANT_RATE_LIMIT": f"{TENANT_LIMIT}/minute",
        }
        self.logs = logs
        self.processes: list[subprocess.Popen[str]] = []
        self.api_urls: list[str] = []
        self.worker_metrics: list[str] = []

    def _start(self, name: str, *args: str) -> subprocess.Popen[str]:
        log = (self.logs / f"{name}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "memory_layer.cli", *args], env=self.env,
            stdout=log, stderr=subprocess.STDOUT, text=True,
        )
        self.processes.append(process)
        return process

    def start(self) -> None:
        apis = []
        for index in range(2):
            port = free_port()
            apis.append(self._start(f"api-{index}", "serve", "--port", str(port)))
            self.api_urls.append(f"http://127.0.0.1:{port}")
        for index in range(2):
            port = free_port()
            self._start(f"worker-{index}", "worker", "--metrics-port", str(port))
            self.worker_metrics.append(f"http://127.0.0.1:{port}/metrics")
        for url, process in zip(self.api_urls, apis, strict=True):
            wait_healthy(url, process)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()


@pytest.fixture
def scale_out_database(db_server: DatabaseServer) -> str:
    url = db_server.create_database(f"scale_out_{uuid.uuid4().hex[:8]}")
    upgrade_to_head(url, 384)
    return url


@pytest.fixture
def deployment(
    scale_out_database: str, redis_url: str, tmp_path: Path
) -> Iterator[Deployment]:
    running = Deployment(scale_out_database, redis_url, tmp_path)
    try:
        running.start()
        yield running
    finally:
        running.stop()


def embedded_by_worker(url: str) -> float:
    body = httpx.get(url, timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == "memory_worker_embeddings_total"
    )


async def test_two_apis_and_two_workers_share_limits_cache_and_queue(
    deployment: Deployment, scale_out_database: str
) -> None:
    engine = create_engine(scale_out_database, pool_size=1, max_overflow=0)
    try:
        limited = new_tenant()
        key = {"X-API-Key": await tenant_key(engine, limited)}
        one, two = (
            httpx.AsyncClient(base_url=url, timeout=30) for url in deployment.api_urls
        )
        async with one, two:
            # The tenant limit is one count in Redis, whichever API a request reaches.
            statuses = [
                (await api.get("/v1/stats", headers=key)).status_code
                for api in (one, two) * TENANT_LIMIT
            ]
            assert statuses == [200] * TENANT_LIMIT + [429] * TENANT_LIMIT

            # A write acknowledged by one API is in the next search of the other, although that
            # search was cached a moment before.
            tenant = new_tenant()
            admin = {"X-API-Key": ADMIN}
            # An admin key acting for a tenant counts against its limit like any key: this
            # tenant's policy lifts it (admin routes themselves are never counted per tenant).
            lifted = await one.put(
                f"/v1/admin/tenants/{tenant}/policy", json={"rate_limit": ""}, headers=admin
            )
            assert lifted.status_code == 200, lifted.text
            search = {"tenant_id": tenant, "query": "scale out message", "mode": "keyword",
                      "top_k": 100}
            for api, number in [(one, n) if n % 2 else (two, n) for n in range(MESSAGES)]:
                before = await two.post("/v1/memory/search", json=search, headers=admin)
                assert before.status_code == 200
                written = await api.post("/v1/messages", headers=admin, json={
                    "tenant_id": tenant, "conversation_id": "c", "role": "user",
                    "content": f"scale out message {number}",
                })
                assert written.status_code == 202, written.text
                after = await two.post("/v1/memory/search", json=search, headers=admin)
                assert len(after.json()["items"]) == number + 1, (number, after.json())

            # Vector hits appear as the workers embed: each batch they record invalidates the
            # tenant's cached searches, so the cache never hides a vector made meanwhile.
            by_vector = {**search, "mode": "vector"}

            async def all_ready() -> bool:
                # Searched (and cached) on every poll, embedded or not.
                await two.post("/v1/memory/search", json=by_vector, headers=admin)
                async with engine.connect() as connection:
                    ready = await connection.scalar(text(
                        "SELECT count(*) FROM messages WHERE tenant_id = :t "
                        "AND embedding_status = 'ready'"
                    ), {"t": tenant})
                return int(ready or 0) == MESSAGES

            await wait_until(all_ready, timeout=60, interval=0.2, message="messages still pending")
            vector_hits = await two.post("/v1/memory/search", json=by_vector, headers=admin)
            assert len(vector_hits.json()["items"]) == MESSAGES

        # The two workers shared the queue: every message embedded, each exactly once.
        async with engine.connect() as connection:
            attempts = (await connection.execute(text(
                "SELECT embedding_attempts, count(*) FROM messages WHERE tenant_id = :t "
                "GROUP BY 1"
            ), {"t": tenant})).all()
        assert [tuple(row) for row in attempts] == [(1, MESSAGES)]
        embedded = [embedded_by_worker(url) for url in deployment.worker_metrics]
        assert sum(embedded) == MESSAGES, embedded
    finally:
        await engine.dispose()
