"""Running the `memory-layer` console script as users run it: a real subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.fixtures.app import ENCRYPTION_KEYS

CLI = str(Path(sys.executable).parent / "memory-layer")
ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        check=False,
    )


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
    # The shared test database holds encrypted channels: a process without their keys refuses to
    # start (tests/fixtures/app.py).
    env["MEMORY_ENCRYPTION_KEYS"] = ENCRYPTION_KEYS
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited early:\n{process.stdout.read() if process.stdout else ''}")
        try:
            if httpx.get(f"{url}/v1/admin/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("serve did not become healthy")


def serve(data_dir: Path, port: int) -> subprocess.Popen[str]:
    env = base_env(MEMORY_DATA_DIR=str(data_dir), MEMORY_EMBEDDING_PROVIDER="fake")
    return subprocess.Popen(
        [CLI, "serve", "--port", str(port)], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    return output
