"""The test command behind `make test`: lint, type-check, layering contracts, then pytest on real
services (whose suite includes `alembic check`: models against migrations).

PostgreSQL + pgvector: the tests start their own embedded server (or use MEMORY_TEST_DATABASE_URL).
Redis: MEMORY_TEST_REDIS_URL, else 127.0.0.1:6379 if it answers, else a private redis-server
started here on a free port and stopped at the end. redis-server itself is required either way:
the rate-limit, cache and fault tests stop and start private servers (REDIS_SERVER for them).
promtool (`promtool check metrics|rules|config`, `promtool test rules`): PROMTOOL.
Both tools: the given path, else on PATH, else installed from Debian's packages when this runs as
root with apt-get; otherwise the run stops with what to install. No test is skipped for them.
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


def ensure_tool(binary: str, env_var: str, package: str, why: str, elsewhere: str) -> str:
    """The tool's path: $env_var, else on PATH, else Debian's `package` installed when root."""
    found = os.environ.get(env_var) or shutil.which(binary)
    if found:
        return found
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        print(f"{binary} not found: installing Debian's {package} package", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update"], check=False, env=env)
        installed = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", package], check=False, env=env
        )
        found = shutil.which(binary)
        if installed.returncode == 0 and found:
            return found
    sys.exit(
        f"{binary} is required ({why}) and was not found. Install it (Debian/Ubuntu: apt-get "
        f"install {package}; {elsewhere}) or set {env_var} to its path."
    )


def ensure_redis(server: str) -> tuple[str, subprocess.Popen[bytes] | None]:
    given = os.environ.get("MEMORY_TEST_REDIS_URL")
    if given:
        return given, None
    if redis_answers("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/15", None
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
    promtool = ensure_tool(
        "promtool", "PROMTOOL", "prometheus",
        "the metrics, alert-rule and Prometheus-config checks run with it",
        "elsewhere the Prometheus release archive has it",
    )
    redis_server = ensure_tool(
        "redis-server", "REDIS_SERVER", "redis-server",
        "the rate-limit, cache and fault tests stop and start Redis servers of their own",
        "macOS: brew install redis",
    )
    redis_url, redis_process = ensure_redis(redis_server)
    env = dict(
        os.environ, MEMORY_TEST_REDIS_URL=redis_url, PROMTOOL=promtool, REDIS_SERVER=redis_server
    )
    try:
        step("pytest", [str(BIN / "python"), "-m", "pytest", *sys.argv[1:]], env=env)
    finally:
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait(timeout=10)


if __name__ == "__main__":
    main()
