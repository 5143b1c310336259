"""The service straight on PostgreSQL and through PgBouncer in transaction mode, in one run.

Starts a private embedded PostgreSQL + pgvector and a PgBouncer (`pgbouncer` on the PATH; Debian:
apt-get install pgbouncer) in front of it with `pool_mode = transaction`, then runs the same load
against one in-process app (ASGI, fake embedder, so the measure is the service and the database,
not a model): C concurrent clients, each R requests alternating a write and a search over 10
tenants. Rounds alternate the two paths, so both see the same machine state. Before the rounds it
records what happens through PgBouncer without MEMORY_DB_TRANSACTION_POOLER, and the start-up
warnings when the database lacks the HNSW settings.

Usage: python scripts/bench_pgbouncer.py [--clients 32] [--requests 40] [--rounds 2]
           [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import free_port, write_block  # noqa: E402

from memory_layer.app import create_app  # noqa: E402
from memory_layer.config import Settings  # noqa: E402
from memory_layer.kit.db.embedded import start_embedded  # noqa: E402
from memory_layer.kit.db.engine import create_engine  # noqa: E402
from memory_layer.kit.db.migrations import upgrade_to_head  # noqa: E402

TENANTS = [f"bench-{i}" for i in range(10)]
POOL_SIZE = 8


@dataclass
class Result:
    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"write": [], "search": []})
    errors: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(len(values) for values in self.latencies.values())


async def execute(url: str, *statements: str) -> None:
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def load(settings: Settings, clients: int, requests: int) -> Result:
    result = Result()
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://bench"
    ) as http:

        async def client(number: int) -> None:
            tenant = TENANTS[number % len(TENANTS)]
            for index in range(requests):
                started = time.perf_counter()
                if index % 2 == 0:
                    kind = "write"
                    response = await http.post("/v1/messages", json={
                        "tenant_id": tenant, "conversation_id": "c", "role": "user",
                        "content": f"client {number} message {index} about topic {index % 7}",
                    })
                else:
                    kind = "search"
                    response = await http.get(
                        "/v1/memory/search", params={"tenant_id": tenant, "query": f"topic {index % 7}"}
                    )
                result.latencies[kind].append(time.perf_counter() - started)
                if response.status_code >= 300:
                    result.errors.append(f"{response.status_code} {response.text[:120]}")

        started = time.perf_counter()
        await asyncio.gather(*(client(number) for number in range(clients)))
        result.seconds = time.perf_counter() - started
    return result


def percentile_ms(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "memory_layer.app" and "hnsw" in record.getMessage():
            self.lines.append(record.getMessage())


def start_pgbouncer(workdir: Path, direct_url: str, system_user: str) -> tuple[subprocess.Popen[bytes], str]:
    url = make_url(direct_url)
    host = url.query.get("host") or url.host or "127.0.0.1"
    port = free_port()
    config = workdir / "pgbouncer.ini"
    config.write_text(
        f"[databases]\n{url.database} = host={host} port={url.port or 5432} dbname={url.database} "
        f"user={url.username}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {workdir}/users.txt\n"
        f"pool_mode = transaction\ndefault_pool_size = {POOL_SIZE}\nmax_client_conn = 1000\n"
        f"logfile = {workdir}/pgbouncer.log\n"
    )
    (workdir / "users.txt").write_text(f'"{url.username}" ""\n')
    command = ["pgbouncer", str(config)]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root; run it as the database's user
        command[1:1] = ["-u", system_user]
        shutil.chown(workdir, system_user)
        for path in workdir.iterdir():
            shutil.chown(path, system_user)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    if process.poll() is not None:
        raise RuntimeError(f"pgbouncer exited with {process.returncode}")
    bouncer = url.set(host="127.0.0.1", port=port, query={})
    return process, bouncer.render_as_string(hide_password=False)


def bench_settings(url: str, **values: Any) -> Settings:
    return Settings(
        _env_file=None, database_url=url, embedding_provider="fake", worker_enabled=False,
        db_pool_size=20, db_max_overflow=0, **values,
    )


async def run(args: argparse.Namespace) -> str:
    if shutil.which("pgbouncer") is None:
        raise SystemExit("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-pgbouncer-"))
    server = start_embedded(workdir / "pg")
    bouncer_process = None
    try:
        admin = server.url("postgres")
        await execute(admin, "DROP DATABASE IF EXISTS bench", "CREATE DATABASE bench")
        direct = make_url(admin).set(database="bench").render_as_string(hide_password=False)
        await asyncio.to_thread(upgrade_to_head, direct, 384)
        bouncer_dir = workdir / "pgbouncer"
        bouncer_dir.mkdir()
        bouncer_process, bouncer = start_pgbouncer(bouncer_dir, direct, server.server.system_user)
        lines: list[str] = []
        try:
            await load(bench_settings(bouncer), 1, 2)
            lines.append("- Through PgBouncer without the setting: the service started.")
        except Exception as exc:
            lines.append(f"- Through PgBouncer without `MEMORY_DB_TRANSACTION_POOLER`: the service "
                         f"does not start (`{str(exc).splitlines()[0][:120]}`).")
        warnings = Warnings()
        logging.getLogger().addHandler(warnings)
        pooled = bench_settings(bouncer, db_transaction_pooler=True)
        await load(pooled, 2, 2)
        logging.getLogger().removeHandler(warnings)
        lines.append(f"- With it, before `ALTER DATABASE ... SET hnsw.*`: {len(warnings.lines)} start-up "
                     "warnings name the missing settings.")
        await execute(direct, "ALTER DATABASE bench SET hnsw.ef_search = 100",
                      "ALTER DATABASE bench SET hnsw.iterative_scan = 'relaxed_order'")
        paths = {
            "straight to PostgreSQL (pool of 20)": bench_settings(direct),
            f"PgBouncer, transaction mode, {POOL_SIZE} server connections": pooled,
        }
        results: dict[str, list[Result]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, settings in paths.items():
                results[name].append(await load(settings, args.clients, args.requests))
    finally:
        if bouncer_process is not None:
            bouncer_process.terminate()
            bouncer_process.wait(10)
        server.stop()

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_average = os.getloadavg()[0]
    report = [
        f"Run {now} on {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()} "
        f"(load average {load_average:.1f} at the end): `python scripts/bench_pgbouncer.py --clients "
        f"{args.clients} --requests {args.requests} --rounds {args.rounds}`.",
        "",
        f"One app in-process (ASGI), fake embedder, {args.clients} concurrent clients of "
        f"{args.requests} requests each, alternating a write and a search over {len(TENANTS)} tenants; "
        "rounds alternate the paths.",
        "",
        *lines,
        "",
        "| path | round | requests/s | write p50 ms | write p95 ms | search p50 ms | search p95 ms "
        "| errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rounds in results.items():
        for number, result in enumerate(rounds, 1):
            writes, searches = result.latencies["write"], result.latencies["search"]
            report.append(
                f"| {name} | {number} | {result.requests / result.seconds:.0f} | "
                f"{percentile_ms(writes, 50):.1f} | {percentile_ms(writes, 95):.1f} | "
                f"{percentile_ms(searches, 50):.1f} | {percentile_ms(searches, 95):.1f} | "
                f"{len(result.errors)} of {result.requests} |"
            )
    return "\n".join(report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--write", type=Path, default=None, help="update this Markdown file")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(report)
    if args.write:
        write_block(args.write, "bench_pgbouncer", report, title="Benchmarks",
                    heading="Through PgBouncer (`scripts/bench_pgbouncer.py`)")


if __name__ == "__main__":
    main()
