"""CPU that `serve` spends per request (a 202 write, a cached-vector search, the health probe),
for this checkout and, side by side in the same run, an earlier commit.

Latency on a 2-core machine shared with PostgreSQL and the benchmark's own clients moves with
whatever else runs; the CPU time a request costs the service does not move much, and it is what
bounds throughput (and so, with clients that post back to back, the latency). This script starts
a private embedded PostgreSQL + pgvector and, for each version in turn (rounds alternate), a
`memory-layer serve` with the fake provider, MEMORY_ASYNC_EMBEDDINGS=true and no worker, and
measures:

  post     --posts POSTs of a chat line from 16 concurrent clients (each answered 202)
  search   --searches POST /v1/memory/search, vector mode, top_k 5, one at a time, the query's
           vector cached by the service (the same text each time)
  health   --searches GET /v1/admin/health, one at a time (the floor: routing, one ping)

For each: the CPU milliseconds per request of serve's event loop (its main thread, from
/proc/<pid>/task/<pid>/schedstat, in nanoseconds) and of the whole process, and the p50 latency.
`--compare-with REV` checks REV out in a temporary git worktree and runs its code (PYTHONPATH)
with this checkout's virtualenv, on a database of its own in the same PostgreSQL, migrated by
REV's own `memory-layer migrate`.

Usage: python scripts/bench_cpu.py [--compare-with REV] [--rounds 3] [--posts 2000]
           [--searches 1000] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
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

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import free_port, process_cpu_seconds, wait_ready, write_block  # noqa: E402

from memory_layer.kit.db.embedded import start_embedded  # noqa: E402

API_KEY = "bench-cpu-key"
CLIENTS = 16
PATHS = ("post", "search", "health")


def loop_seconds(pid: int) -> float:
    """CPU seconds of the process's main thread (serve's event loop), to the nanosecond."""
    return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[0]) / 1e9


@dataclass
class Figures:
    loop_ms: list[float] = field(default_factory=list)
    process_ms: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)


def migrate(source: Path, url: str) -> None:
    """The version's own migrations, run by its own code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
    env.update(MEMORY_DATABASE_URL=url, PYTHONPATH=str(source / "src"))
    subprocess.run([str(Path(sys.executable).parent / "memory-layer"), "migrate"], env=env,
                   cwd=source, check=True, capture_output=True)


async def one_round(source: Path, url: str, data_dir: Path, args: argparse.Namespace,
                    round_no: int, figures: dict[str, Figures]) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
    env.update(MEMORY_DATABASE_URL=url, MEMORY_EMBEDDING_PROVIDER="fake", MEMORY_API_KEYS=API_KEY,
               MEMORY_LOG_LEVEL="warning", MEMORY_WORKER_ENABLED="false",
               MEMORY_ASYNC_EMBEDDINGS="true", MEMORY_DATA_DIR=str(data_dir),
               # Thousands of requests a minute from one address; the limiter still counts them.
               MEMORY_GLOBAL_RATE_LIMIT="1000000/minute",
               PYTHONPATH=str(source / "src"))
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "memory-layer"), "serve", "--port", str(port)],
        env=env, cwd=source,
    )
    pid = server.pid
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                     headers={"X-API-Key": API_KEY},
                                     limits=httpx.Limits(max_connections=CLIENTS * 2)) as client:
            await wait_ready(client)
            tenant = f"cpu-{round_no}"
            search = {"tenant_id": tenant, "query": "garden weather", "mode": "vector", "top_k": 5}
            for i in range(50):  # warm-up: imports, pools, the query vector's cache entry
                line = {"tenant_id": tenant, "conversation_id": "warm", "role": "user",
                        "content": f"warm-up line {i}"}
                (await client.post("/v1/messages", json=line)).raise_for_status()
                (await client.post("/v1/memory/search", json=search)).raise_for_status()

            numbers = iter(range(args.posts))
            latencies: list[float] = []

            async def poster() -> None:
                for i in numbers:
                    line = {"tenant_id": tenant, "conversation_id": f"c-{i % 20}", "role": "user",
                            "content": f"message {i}: the garden needs water before the weekend"}
                    started = time.perf_counter()
                    response = await client.post("/v1/messages", json=line)
                    latencies.append(time.perf_counter() - started)
                    if response.status_code != 202:
                        raise RuntimeError(f"POST answered {response.status_code}: {response.text}")

            loop0, process0 = loop_seconds(pid), process_cpu_seconds(pid)
            await asyncio.gather(*(poster() for _ in range(CLIENTS)))
            record(figures["post"], pid, loop0, process0, args.posts, latencies)

            for name in ("search", "health"):
                latencies = []
                loop0, process0 = loop_seconds(pid), process_cpu_seconds(pid)
                for _ in range(args.searches):
                    started = time.perf_counter()
                    if name == "search":
                        response = await client.post("/v1/memory/search", json=search)
                    else:
                        response = await client.get("/v1/admin/health")
                    latencies.append(time.perf_counter() - started)
                    response.raise_for_status()
                record(figures[name], pid, loop0, process0, args.searches, latencies)
    finally:
        server.terminate()
        server.wait(timeout=30)


def record(figures: Figures, pid: int, loop0: float, process0: float, count: int,
           latencies: list[float]) -> None:
    figures.loop_ms.append(1000 * (loop_seconds(pid) - loop0) / count)
    figures.process_ms.append(1000 * (process_cpu_seconds(pid) - process0) / count)
    figures.p50_ms.append(1000 * statistics.median(latencies))


def describe(rev: str, source: Path) -> str:
    try:
        return subprocess.run(["git", "log", "-1", "--format=%h (%cd)", "--date=short", rev],
                              cwd=source, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return rev


async def run(args: argparse.Namespace) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="ml-bench-cpu-"))
    versions: dict[str, Path] = {"this checkout": ROOT}
    if args.compare_with:
        tree = workdir / "compare"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.compare_with],
                       cwd=ROOT, check=True, capture_output=True)
        versions = {args.compare_with: tree, "this checkout": ROOT}
    figures = {v: {p: Figures() for p in PATHS} for v in versions}
    embedded = start_embedded(workdir / "db")
    try:
        urls: dict[str, str] = {}
        for index, (version, source) in enumerate(versions.items()):
            name = f"bench_cpu_{index}"
            embedded.ensure_database(name)
            urls[version] = embedded.url(name)
            await asyncio.to_thread(migrate, source, urls[version])
        runs = 0
        for round_no in range(args.rounds):
            for version, source in versions.items():
                runs += 1  # each run writes to a tenant of its own
                await one_round(source, urls[version], workdir / "data", args, runs,
                                figures[version])
                print(f"round {round_no + 1}: {version} done", file=sys.stderr, flush=True)
    finally:
        embedded.stop()
        if args.compare_with:
            subprocess.run(["git", "worktree", "remove", "--force", str(workdir / "compare")],
                           cwd=ROOT, capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)

    load = os.getloadavg()[0]
    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, {os.cpu_count()} "
        f"cores, Python {platform.python_version()}: `python scripts/bench_cpu.py "
        + " ".join(sys.argv[1:]).replace(f" --write {args.write}", "").strip() + "`.",
        "",
        f"{args.rounds} alternating round(s) per version, medians shown. post: {args.posts} POSTs "
        f"from {CLIENTS} concurrent clients (each 202); search: {args.searches} cached-vector "
        f"searches one at a time; health: as many GET /v1/admin/health. Load average at the end: "
        f"{load:.1f}.",
        "",
        "| version | path | event loop CPU ms per request | process CPU ms per request "
        "| p50 ms |",
        "|---|---|---:|---:|---:|",
    ]
    for version in versions:
        label = describe(version, ROOT) if version != "this checkout" else "this checkout"
        for path in PATHS:
            f = figures[version][path]
            lines.append(
                f"| {label} | {path} | {statistics.median(f.loop_ms):.2f} | "
                f"{statistics.median(f.process_ms):.2f} | {statistics.median(f.p50_ms):.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare-with", default=None, help="a git revision to run beside this one")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--searches", type=int, default=1000)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(report)
    if args.write:
        write_block(args.write, "bench_cpu", report, title="Benchmarks",
                    heading="CPU per request (`scripts/bench_cpu.py`)")


if __name__ == "__main__":
    main()
