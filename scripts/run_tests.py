"""The test command behind `make test`: lint, type-check, layering contracts, then pytest on real
services (whose suite includes `alembic check`: models against migrations).

PostgreSQL + pgvector: the tests start their own embedded server (or use MEMORY_TEST_DATABASE_URL).
Redis: MEMORY_TEST_REDIS_URL, else 127.0.0.1:6379 if it answers, else a private redis-server
started here on a free port and stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def step(title: str, command: list[str], env: dict[str, str] | None = None) -> None:
    print(f"==> {title}: {' '.join(command)}", flush=True)
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env, check=False)
    print(f"<== {title}: exit {result.returncode} in {time.monotonic() - started:.1f}s", flush=True)
    if result.returncode != 0:
        sys.exit(result.returncode)


def redis_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_redis() -> tuple[str, subprocess.Popen[bytes] | None]:
    given = os.environ.get("MEMORY_TEST_REDIS_URL")
    if given:
        return given, None
    if redis_answers("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/15", None
    server = shutil.which("redis-server")
    if server is None:
        sys.exit(
            "No Redis answers on 127.0.0.1:6379 and redis-server is not installed. Install it "
            "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or set "
            "MEMORY_TEST_REDIS_URL."
        )
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="memory-layer-redis-")
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        if redis_answers("127.0.0.1", port):
            print(f"started redis-server on 127.0.0.1:{port}", flush=True)
            return f"redis://127.0.0.1:{port}/0", process
        time.sleep(0.1)
    process.kill()
    sys.exit("redis-server did not start")


def main() -> None:
    step("ruff", [str(BIN / "ruff"), "check", "src", "tests", "scripts", "alembic"])
    step("mypy", [str(BIN / "mypy")])
    # The layering contracts of docs/architecture.md ([tool.importlinter] in pyproject.toml).
    step("import-linter", [str(BIN / "lint-imports")])
    redis_url, redis_process = ensure_redis()
    env = dict(os.environ, MEMORY_TEST_REDIS_URL=redis_url)
    try:
        step("pytest", [str(BIN / "python"), "-m", "pytest", *sys.argv[1:]], env=env)
    finally:
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait(timeout=10)


if __name__ == "__main__":
    main()
