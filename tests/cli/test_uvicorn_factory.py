"""A plain uvicorn user runs the service: `uvicorn --factory memory_layer.app:create_app`."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from tests.support.cli import ROOT, base_env, free_port, stop, wait_healthy


def test_uvicorn_factory_serves_with_settings_and_json_logs_from_the_environment(
    database_url: str,
) -> None:
    port = free_port()
    env = base_env(
        MEMORY_DATABASE_URL=database_url,
        MEMORY_EMBEDDING_PROVIDER="mock",
        # The test database is shared: no worker here to embed other tests' pending rows.
        MEMORY_WORKER_ENABLED="false",
        MEMORY_LOG_FORMAT="json",
        MEMORY_ADMIN_API_KEYS="factory-admin-key",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "memory_layer.app:create_app",
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        ready = httpx.get(
            f"{url}/v1/admin/readiness",
            headers={"X-API-Key": "factory-admin-key", "X-Request-ID": "factory-1"},
            timeout=10,
        )
        refused = httpx.get(f"{url}/v1/admin/embeddings", timeout=10)
    finally:
        output = stop(process)
    assert ready.status_code == 200, output
    assert ready.headers["X-Request-ID"] == "factory-1"
    # The keys came from the environment: a request without one is refused.
    assert refused.status_code == 401
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "memory_layer.access"]
    assert any(
        line["request_id"] == "factory-1" and line["route"] == "/v1/admin/readiness"
        and line["status"] == 200
        for line in access
    ), output
    # Every line is JSON: uvicorn's own lines too, and none of uvicorn's access lines.
    assert all(line.startswith("{") for line in output.splitlines() if line.strip()), output
    assert not any(line.get("logger") == "uvicorn.access" for line in lines)
