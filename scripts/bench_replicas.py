"""Search throughput on the primary alone and with one streaming read replica, in one run.

Starts a private embedded PostgreSQL + pgvector and a hot standby of it (pg_basebackup -R -X
stream, as tests/replicas does), loads T tenants of M messages each (fake embedder: the measure is
the service and the databases, not a model), then runs the same search load against one
in-process app (ASGI) configured without and with MEMORY_DATABASE_REPLICA_URLS: C concurrent
clients, each R hybrid searches of new query texts over the tenants, no search cache. Rounds
alternate the two setups. For each round it records requests/s, latency, which server ran the
reads (memory_db_reads_total) and the CPU time each PostgreSQL server spent (its postmaster and
every backend, from /proc): database CPU per search is what a replica takes off the primary, and
the arithmetic for N replicas starts from it.

Usage: python scripts/bench_replicas.py [--tenants 10] [--messages 1000] [--clients 16]
           [--requests 60] [--rounds 3] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from benchkit import server_cpu_seconds, write_block  # noqa: E402
from tests.support.replication import Cluster, start_cluster  # noqa: E402

from memory_layer.app import create_app  # noqa: E402
from memory_layer.config import Settings  # noqa: E402
from memory_layer.kit.db.migrations import upgrade_to_head  # noqa: E402

DATABASE = "memory_layer"
WORDS = [
    "parrot", "garden", "river", "invoice", "meeting", "travel", "budget", "doctor", "music",
    "recipe", "holiday", "school", "project", "football", "weather", "camera", "market",
    "library", "coffee", "mountain",
]


@dataclass
class Round:
    setup: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    reads: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds


def settings_for(cluster: Cluster, replica: bool, pool: int) -> Settings:
    values: dict[str, object] = {
        "database_url": cluster.primary_url(DATABASE),
        "embedding_provider": "fake",
        "embedding_dimensions": 384,
        "worker_enabled": False,
        "global_rate_limit": "off",
        "tenant_rate_limit": "off",
        "db_pool_size": pool,
        "search_cache_ttl_seconds": 0,
        "shared_query_cache_ttl_seconds": 0,
        "data_dir": Path(tempfile.gettempdir()) / "memory-layer-bench-data",
    }
    if replica:
        values["database_replica_urls"] = [cluster.standby.url(DATABASE)]
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


async def load_data(cluster: Cluster, tenants: int, messages: int) -> None:
    app = create_app(settings_for(cluster, replica=False, pool=4))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=120
    ) as http:
        for tenant in range(tenants):
            for start in range(0, messages, 100):
                items = [
                    {"conversation_id": f"c{n % 20}", "role": "user",
                     "content": " ".join(WORDS[(n * k) % len(WORDS)] for k in range(1, 9))
                     + f" note {n}"}
                    for n in range(start, min(messages, start + 100))
                ]
                answer = await http.post(
                    "/v1/messages/batch", json={"tenant_id": f"bench-{tenant}", "messages": items}
                )
                if answer.status_code >= 300:
                    raise RuntimeError(answer.text)


async def run_round(
    cluster: Cluster, setup: str, tenants: int, clients: int, requests: int
) -> Round:
    result = Round(setup)
    app = create_app(settings_for(cluster, replica=setup == "replica", pool=clients))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=120
    ) as http:

        async def client(number: int) -> None:
            for index in range(requests):
                words = " ".join(WORDS[(number * 7 + index * k) % len(WORDS)] for k in (1, 3))
                started = time.perf_counter()
                answer = await http.post("/v1/memory/search", json={
                    "tenant_id": f"bench-{(number + index) % tenants}",
                    "query": f"{words} {number}-{index}", "top_k": 10,
                })
                result.latencies.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    result.errors.append(f"{answer.status_code} {answer.text[:120]}")

        before = {"primary": server_cpu_seconds(cluster.primary.pgdata),
                  "replica": server_cpu_seconds(cluster.standby.pgdata)}
        started = time.perf_counter()
        await asyncio.gather(*(client(number) for number in range(clients)))
        result.seconds = time.perf_counter() - started
        result.cpu = {
            "primary": server_cpu_seconds(cluster.primary.pgdata) - before["primary"],
            "replica": server_cpu_seconds(cluster.standby.pgdata) - before["replica"],
        }
        metrics = app.state.metrics
        for target in ("primary", "replica-0"):
            result.reads[target] = metrics.db_reads.labels(target=target)._value.get()
    return result


def report(rounds: list[Round], args: argparse.Namespace, load: float) -> str:
    def ms(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * 1000

    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, {os.cpu_count()} "
        f"cores, Python {platform.python_version()}; load average before the run {load:.1f}. "
        f"One embedded PostgreSQL primary and one streaming hot standby **on the same machine** "
        f"(they share its cores with the API process); {args.tenants} tenants x {args.messages} "
        f"messages (fake embedder, 384 dimensions), {args.clients} concurrent clients x "
        f"{args.requests} hybrid searches of new query texts each, search cache off.",
        "",
        "| round | setup | searches/s | p50 ms | p95 ms | reads on primary / replica | "
        "primary CPU ms per search | replica CPU ms per search | errors |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for number, result in enumerate(rounds, 1):
        count = len(result.latencies)
        reads = (
            "all on the primary (no replica configured)" if result.setup == "primary"
            else f"{result.reads['primary']:.0f} / {result.reads['replica-0']:.0f}"
        )
        lines.append(
            f"| {(number + 1) // 2} | {result.setup} | {result.rate:.0f} | "
            f"{ms(result.latencies, 50):.1f} | {ms(result.latencies, 95):.1f} | "
            f"{reads} | "
            f"{result.cpu['primary'] * 1000 / count:.2f} | "
            f"{result.cpu['replica'] * 1000 / count:.2f} | {len(result.errors)} |"
        )
    alone = [r for r in rounds if r.setup == "primary"]
    spread = [r for r in rounds if r.setup == "replica"]
    # Medians: a round that another process on the machine slowed down does not move them.
    db_ms = statistics.median(r.cpu["primary"] * 1000 / len(r.latencies) for r in alone)
    moved = statistics.median(r.cpu["replica"] * 1000 / len(r.latencies) for r in spread)
    left = statistics.median(r.cpu["primary"] * 1000 / len(r.latencies) for r in spread)
    lines += [
        "",
        f"Database CPU per search (median of the rounds): {db_ms:.2f} ms on the primary alone; "
        f"with the replica "
        f"{moved:.2f} ms on the replica and {left:.2f} ms left on the primary (its WAL sender "
        f"and the replica checks).",
    ]
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="rep-", dir="/tmp") as directory:
        cluster = start_cluster(Path(directory))
        try:
            cluster.primary.ensure_database(DATABASE)
            upgrade_to_head(cluster.primary_url(DATABASE), 384)
            started = time.perf_counter()
            await load_data(cluster, args.tenants, args.messages)
            cluster.wait_replayed(DATABASE, timeout=300)
            print(f"loaded {args.tenants * args.messages} messages in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
            rounds = []
            for _ in range(args.rounds):
                for setup in ("primary", "replica"):
                    result = await run_round(
                        cluster, setup, args.tenants, args.clients, args.requests
                    )
                    print(f"{setup}: {result.rate:.0f} searches/s, reads {result.reads}, "
                          f"cpu {result.cpu}, errors {len(result.errors)}", flush=True)
                    rounds.append(result)
        finally:
            cluster.stop()
    text = report(rounds, args, load)
    print(text)
    if args.write:
        write_block(args.write, "bench_replicas", text, title="Benchmarks",
                    heading="Read replicas (scripts/bench_replicas.py)")


if __name__ == "__main__":
    asyncio.run(main())
