"""`memory-layer worker --metrics-port N` as deployed: its own /metrics, and JSON lines with request ids."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.cli import free_port
from tests.support.metrics import sample_value
from tests.support.promtool import check_metrics
from tests.support.waiting import wait_until


async def test_worker_process_serves_clean_metrics_and_logs_request_ids(
    engine: AsyncEngine, worker_database_url: str
) -> None:
    message_id = uuid.uuid4()
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO messages (tenant_id, id, conversation_id, role, content, importance, "
                "request_id) VALUES ('t-proc', :id, 'c', 'user', 'worker process text', 0.5, "
                "'req-from-the-api')"
            ),
            {"id": message_id},
        )
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")},
        "MEMORY_DATABASE_URL": worker_database_url,
        "MEMORY_EMBEDDING_PROVIDER": "mock",  # the earlier README's name of the fake provider
        "MEMORY_LOG_FORMAT": "json",
        "MEMORY_API_KEYS": "k",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "memory_layer.cli", "worker", "--metrics-port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    exposition = ""
    try:

        async def embedded() -> bool:
            nonlocal exposition
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
            except httpx.HTTPError:
                return False
            exposition = response.text
            value = sample_value(exposition, "memory_worker_embeddings_total", {"model": "fake-hash-384"})
            return value == 1.0

        await wait_until(embedded, timeout=60, message="the worker process never embedded the row")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, output
    assert check_metrics(exposition) == ""
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    (line,) = [line for line in lines if line["event"] == "message embedded"]
    assert line["request_id"] == "req-from-the-api"
    assert line["message_id"] == str(message_id)
    assert "worker process text" not in output
