"""The service on a primary and a streaming hot standby, real processes end to end.

A primary and a standby (pg_basebackup -R -X stream) from the embedded binaries, one `memory-layer
serve` with MEMORY_DATABASE_REPLICA_URLS naming the standby, and Redis (so the search cache is in
the path too). Shown here: searches run on the standby (its statement log has them, the primary's
does not); 1,000 writes each followed by a search that sends the write's consistency token back
all find their write; stopping the standby in the middle of that load fails no request, reads go
to the primary meanwhile, and the standby is back in use once it runs again.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from memory_layer.kit.db.migrations import upgrade_to_head
from tests.support.cli import base_env, free_port, wait_healthy
from tests.support.replication import Cluster, set_log_statements, start_cluster
from tests.support.waiting import wait_until

ADMIN = "replica-admin"
DATABASE = "memory_layer"
TRIES = 1000
CONCURRENCY = 8
TENANTS = [f"replica-{uuid.uuid4().hex[:6]}-{n}" for n in range(8)]
TOKEN = "Memory-Consistency-Token"
READ_FROM = "Memory-Read-From"


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # A short path: the servers' Unix sockets live in these directories.
    running = start_cluster(Path(tmp_path_factory.mktemp("rep")))
    try:
        running.primary.ensure_database(DATABASE)
        upgrade_to_head(running.primary_url(DATABASE), 384)
        running.wait_replayed(DATABASE)
        yield running
    finally:
        running.stop()


@pytest.fixture
def service(
    cluster: Cluster, redis_url: str, redis_prefix: str, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    env = base_env(
        MEMORY_DATABASE_URL=cluster.primary_url(DATABASE),
        MEMORY_DATABASE_REPLICA_URLS=cluster.standby.url(DATABASE),
        MEMORY_REPLICA_CHECK_INTERVAL_SECONDS="0.2",
        MEMORY_REDIS_URL=redis_url,
        MEMORY_REDIS_KEY_PREFIX=redis_prefix,
        MEMORY_ADMIN_API_KEYS=ADMIN,
        MEMORY_EMBEDDING_PROVIDER="fake",
        MEMORY_WORKER_ENABLED="false",
        MEMORY_GLOBAL_RATE_LIMIT="off",
        MEMORY_TENANT_RATE_LIMIT="off",
        MEMORY_DB_POOL_SIZE="8",
    )
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "memory_layer.cli", "serve", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield url, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        print(log.read_text()[-4000:])


async def write_then_search(http: httpx.AsyncClient, number: int) -> tuple[str, str]:
    """One write and a search with its token; answers (who served the search, its token)."""
    tenant = TENANTS[number % len(TENANTS)]
    word = f"tryx{uuid.uuid4().hex[:10]}"
    written = await http.post("/v1/messages", json={
        "tenant_id": tenant, "conversation_id": "c", "role": "user",
        "content": f"replicated message {word}",
    })
    assert written.status_code == 200, written.text
    token = written.headers[TOKEN]
    found = await http.post(
        "/v1/memory/search",
        json={"tenant_id": tenant, "query": word, "mode": "keyword", "top_k": 5},
        headers={TOKEN: token},
    )
    assert found.status_code == 200, found.text
    ids = [item["message_id"] for item in found.json()["items"]]
    assert written.json()["message_id"] in ids, (number, found.headers.get(READ_FROM), token)
    return found.headers[READ_FROM], token


async def test_searches_on_the_standby_read_their_writes_and_survive_its_stop(
    cluster: Cluster, service: tuple[str, Path]
) -> None:
    url, log = service
    async with httpx.AsyncClient(
        base_url=url, timeout=30, headers={"X-API-Key": ADMIN}
    ) as http:
        # Which server runs a search: the statement logs of both, while one search runs.
        probe = f"probe{uuid.uuid4().hex[:10]}"
        set_log_statements(cluster, on=True)
        try:
            served_by, _ = await write_then_search(http, -1)
            logged = await http.post("/v1/memory/search", json={
                "tenant_id": TENANTS[0], "query": f"replicated {probe}", "mode": "keyword",
            })
            assert logged.status_code == 200, logged.text
            assert logged.headers[READ_FROM] == "replica-0"
        finally:
            set_log_statements(cluster, on=False)
        assert served_by == "replica-0"
        assert probe in cluster.standby.log.read_text()
        assert probe not in cluster.primary.log.read_text()

        # 1,000 writes, each followed by a search with its token; the standby stops after 300
        # and starts again after 600.
        served: dict[str, Counter[str]] = {
            phase: Counter() for phase in ("before", "stopped", "after")
        }
        phase = "before"
        done = 0
        numbers = iter(range(TRIES))

        async def client() -> None:
            nonlocal done
            for number in numbers:
                target, _ = await write_then_search(http, number)
                served[phase][target] += 1
                done += 1

        async def operator() -> None:
            nonlocal phase
            await wait_until(lambda: done >= 300, timeout=60, interval=0.01)
            await asyncio.to_thread(cluster.standby.stop, "fast")
            phase = "stopped"
            await wait_until(lambda: done >= 600, timeout=60, interval=0.01)
            await asyncio.to_thread(cluster.standby.start)
            phase = "after"

        await asyncio.gather(operator(), *(client() for _ in range(CONCURRENCY)))
        print("searches served by", {name: dict(count) for name, count in served.items()})
        assert done == TRIES  # every request answered 200 and found its write
        assert served["before"]["replica-0"] > served["before"]["primary"], served
        assert served["stopped"]["primary"] > 0, served

        # The standby comes back into use once it runs and has caught up.
        async def back_in_use() -> bool:
            answer = await http.get(
                "/v1/memory/search", params={"tenant_id": TENANTS[0], "query": "replicated"}
            )
            return answer.status_code == 200 and answer.headers[READ_FROM] == "replica-0"

        await wait_until(back_in_use, timeout=30, interval=0.1, message="standby not back")
        readiness = (await http.get("/v1/admin/readiness")).json()
        [replica] = readiness["checks"]["replicas"]["detail"]
        assert replica["healthy"] is True, readiness
        metrics = (await http.get("/metrics")).text
        assert 'memory_db_reads_total{target="replica-0"}' in metrics
        assert 'memory_db_replica_up{replica="replica-0"} 1.0' in metrics
    lines = log.read_text()
    assert "read replica replica-0" in lines
    assert "left out of reads" in lines
    assert "back in use" in lines
