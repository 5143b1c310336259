"""Side-by-side latency of the HTTP API and what it is made of, in one run.

Starts a private embedded PostgreSQL + pgvector and `memory-layer serve` (local model) on it,
ingests N messages over HTTP, then measures, interleaved so every path sees the same machine state:

  embed_query      the local model alone, one query text
  sql_search       the service's own search SQL (imported, not copied) through asyncpg,
                   query vector precomputed, on the tenant's partition and exact or through the
                   graph as the service's own rule chooses
  sql_search_messages  the same statement on `messages` itself (the partitioned table): what the
                   search cost before it named the tenant's partition
  http_search_cold GET /v1/memory/search with a query text never seen before (model + SQL + HTTP)
  http_search      the same route with a query repeated from earlier rounds (vector from the cache)
  http_ingest      POST /v1/messages end to end (embedding + insert + commit + HTTP)
  http_health      GET /v1/admin/health: the floor of one HTTP round trip with one database ping
  embed_document   the local model alone, one message text

Usage: python scripts/bench_api.py [--messages 1000] [--searches 200] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from pgvector import Vector

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import free_port, positional, wait_ready, write_block  # noqa: E402

from memory_layer.config import Settings  # noqa: E402
from memory_layer.embeddings.providers.local import LocalEmbeddingProvider  # noqa: E402
from memory_layer.kit.db.embedded import start_embedded  # noqa: E402
from memory_layer.kit.db.engine import to_libpq_url  # noqa: E402
from memory_layer.search.plan import SearchFilters, SearchMode, SearchPlan  # noqa: E402
from memory_layer.search.repository import TENANT_PARTITION_SQL, build_search_sql  # noqa: E402
from memory_layer.search.scoring import ScoreWeights  # noqa: E402
from memory_layer.search.service import search_exactly  # noqa: E402

API_KEY = "bench-api-key"
TOPICS = ["python", "travel", "cooking", "music", "finance", "health", "family", "work", "garden"]
TEMPLATES = [
    "I really enjoy {t} on weekends",
    "Remind me about the {t} appointment next Tuesday",
    "My favourite thing about {t} is how relaxing it is",
    "We talked about {t} for an hour yesterday",
    "Can you summarise what I said about {t}?",
    "The {t} plan for 2027 needs a budget of 1200 euros",
]
QUERIES = [f"what do I like about {t}" for t in TOPICS] + [f"{t} plans" for t in TOPICS]

# The service runs with default settings here, so the raw query uses the default settings too.
SETTINGS = Settings(_env_file=None)


async def tenant_shape(connection: asyncpg.Connection, tenant: str) -> tuple[str, bool]:
    """Where and how the service searches the tenant: its partition of `messages`, and whether
    exactly (the service's own rule, on the same catalog figures)."""
    table, partition_rows = await connection.fetchrow(positional(TENANT_PARTITION_SQL)[0], tenant)
    rows = await connection.fetchval("SELECT count(*) FROM messages WHERE tenant_id = $1", tenant)
    return str(table), search_exactly(int(rows), int(partition_rows), SETTINGS)


def raw_search(tenant: str, query: str, vector: list[float], model: str, table: str, exact: bool
               ) -> tuple[str, list[object]]:
    """The statement the service runs for a default (hybrid) search without filters, and its
    arguments in asyncpg's order (the vector in pgvector's text form)."""
    plan = SearchPlan(
        tenant_id=tenant, query_text=query, query_vector=vector, mode=SearchMode.hybrid,
        fusion=SETTINGS.search_fusion, model=model, limit=5, candidate_pool=20,
        filters=SearchFilters(), weights=ScoreWeights.from_settings(SETTINGS),
        rrf_k=SETTINGS.search_rrf_k, keyword_weight=SETTINGS.search_keyword_weight,
        exact=exact, table=table,
    )
    statement, params = build_search_sql(plan)
    params["query_vector"] = Vector._to_db(vector)
    sql, names = positional(statement.text)
    return sql, [params[name] for name in names]


def metric_mean_ms(metrics_text: str, name: str) -> float:
    values = {}
    for line in metrics_text.splitlines():
        for suffix in ("_sum", "_count"):
            if line.startswith(name + suffix + " "):
                values[suffix] = float(line.split()[-1])
    return 1000 * values["_sum"] / values["_count"]


def loop_cpu_seconds(pid: int) -> float:
    """CPU time of the process's main thread, the event loop of `serve`, in seconds: the first
    field of its schedstat, in nanoseconds (precise, unlike the 10 ms ticks of /proc/<pid>/stat)."""
    return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[0]) / 1e9


def summary(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return statistics.median(ordered) * 1000, p95 * 1000, statistics.fmean(ordered) * 1000


async def run(args: argparse.Namespace) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="ml-bench-"))
    embedded = start_embedded(workdir)
    embedded.ensure_database()
    url = embedded.url()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
    env.update(MEMORY_DATABASE_URL=url, MEMORY_AUTO_MIGRATE="true", MEMORY_LOG_LEVEL="warning",
               # A configured key, as in bench_search.py and bench_ingest.py: authentication
               # touches no database (the open development mode looks for keys on every request).
               MEMORY_API_KEYS=API_KEY,
               # Thousands of requests a minute from one address: the per-address limit is off.
               MEMORY_GLOBAL_RATE_LIMIT="off")
    cli = str(Path(sys.executable).parent / "memory-layer")
    server = subprocess.Popen([cli, "serve", "--port", str(port)], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(
            base_url=base, timeout=30, headers={"X-API-Key": API_KEY}
        ) as client:
            await wait_ready(client, attempts=300)

            rng = random.Random(42)
            tenants = [f"bench-{i}" for i in range(args.tenants)]
            texts = [
                rng.choice(TEMPLATES).format(t=rng.choice(TOPICS)) + f" (note {i})"
                for i in range(args.messages + args.searches)
            ]
            ingest: list[float] = []
            for i in range(args.messages):
                body = {"tenant_id": tenants[i % len(tenants)], "conversation_id": f"c{i % 7}",
                        "role": "user", "content": texts[i]}
                started = time.perf_counter()
                response = await client.post("/v1/messages", json=body)
                ingest.append(time.perf_counter() - started)
                response.raise_for_status()

            import torch

            # The benchmark's own model copy stays on one thread, so its idle workers do not
            # compete with the service's for the machine's cores.
            torch.set_num_threads(1)
            model = await asyncio.to_thread(LocalEmbeddingProvider.load)
            connection = await asyncpg.connect(to_libpq_url(url))
            await connection.execute("SET hnsw.iterative_scan = relaxed_order")
            await connection.execute(f"SET hnsw.ef_search = {SETTINGS.hnsw_ef_search}")
            await connection.execute("ANALYZE messages")  # as autovacuum would have by now
            shapes = {tenant: await tenant_shape(connection, tenant) for tenant in tenants}
            timings: dict[str, list[float]] = {
                "embed_query": [], "sql_search": [], "sql_search_messages": [],
                "http_search_cold": [], "http_search": [],
                "embed_document": [], "http_ingest": [], "http_health": [],
            }
            # CPU of serve's event loop during each HTTP request (the model runs on its own thread).
            loop_cpu: dict[str, list[float]] = {
                "http_search_cold": [], "http_search": [], "http_ingest": [], "http_health": [],
            }
            hits_agree = 0
            for i in range(args.searches):
                tenant = tenants[i % len(tenants)]
                query = f"{QUERIES[i % len(QUERIES)]} (round {i})"
                started = time.perf_counter()
                vector = await model.embed_query(query)
                timings["embed_query"].append(time.perf_counter() - started)

                raw_sql, raw_args = raw_search(tenant, query, vector, model.model_name,
                                               *shapes[tenant])
                started = time.perf_counter()
                rows = await connection.fetch(raw_sql, *raw_args)
                timings["sql_search"].append(time.perf_counter() - started)
                whole_sql, whole_args = raw_search(tenant, query, vector, model.model_name,
                                                   "messages", shapes[tenant][1])
                started = time.perf_counter()
                await connection.fetch(whole_sql, *whole_args)
                timings["sql_search_messages"].append(time.perf_counter() - started)

                cpu_before, started = loop_cpu_seconds(server.pid), time.perf_counter()
                response = await client.get(
                    "/v1/memory/search", params={"tenant_id": tenant, "query": query, "top_k": 5}
                )
                timings["http_search_cold"].append(time.perf_counter() - started)
                loop_cpu["http_search_cold"].append(loop_cpu_seconds(server.pid) - cpu_before)
                response.raise_for_status()
                http_ids = [item["message_id"] for item in response.json()["items"]]
                hits_agree += http_ids == [str(row["id"]) for row in rows]

                # The query of the previous round: its vector is in the service's cache.
                repeated = f"{QUERIES[(i - 1) % len(QUERIES)]} (round {i - 1})" if i else query
                cpu_before, started = loop_cpu_seconds(server.pid), time.perf_counter()
                response = await client.get(
                    "/v1/memory/search",
                    params={"tenant_id": tenants[(i - 1) % len(tenants)], "query": repeated,
                            "top_k": 5},
                )
                timings["http_search"].append(time.perf_counter() - started)
                loop_cpu["http_search"].append(loop_cpu_seconds(server.pid) - cpu_before)
                response.raise_for_status()

                text = texts[args.messages + i]
                started = time.perf_counter()
                await model.embed_documents([text])
                timings["embed_document"].append(time.perf_counter() - started)

                cpu_before, started = loop_cpu_seconds(server.pid), time.perf_counter()
                response = await client.post(
                    "/v1/messages",
                    json={"tenant_id": tenant, "conversation_id": "bench", "role": "user",
                          "content": text},
                )
                timings["http_ingest"].append(time.perf_counter() - started)
                loop_cpu["http_ingest"].append(loop_cpu_seconds(server.pid) - cpu_before)
                response.raise_for_status()

                cpu_before, started = loop_cpu_seconds(server.pid), time.perf_counter()
                response = await client.get("/v1/admin/health")
                timings["http_health"].append(time.perf_counter() - started)
                loop_cpu["http_health"].append(loop_cpu_seconds(server.pid) - cpu_before)
                response.raise_for_status()
            await connection.close()
            await model.close()
            metrics_text = (await client.get("/metrics")).text
            service_embed_ms = metric_mean_ms(metrics_text, "memory_embedding_duration_seconds")
    finally:
        server.terminate()
        server.wait(timeout=30)
        embedded.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M UTC} on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}: "
        f"`python scripts/bench_api.py --messages {args.messages} --searches {args.searches} "
        f"--tenants {args.tenants}`.",
        "",
        f"{args.messages} messages across {args.tenants} tenants were first ingested over HTTP "
        f"(p50 {summary(ingest)[0]:.1f} ms each). Then {args.searches} rounds, each path once per "
        "round, interleaved. HTTP and SQL returned the same top-5 ids in "
        f"{hits_agree}/{args.searches} rounds.",
        "",
        "| path | p50 ms | p95 ms | mean ms | serve's event loop CPU, mean ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, samples in timings.items():
        p50, p95, mean = summary(samples)
        cpu = f"{1000 * statistics.fmean(loop_cpu[name]):.2f}" if name in loop_cpu else ""
        lines.append(f"| {name} | {p50:.2f} | {p95:.2f} | {mean:.2f} | {cpu} |")
    cold_p50 = summary(timings["http_search_cold"])[0]
    cached_p50 = summary(timings["http_search"])[0]
    sql_p50 = summary(timings["sql_search"])[0]
    parts_p50 = summary(timings["embed_query"])[0] + sql_p50
    lines += [
        "",
        f"Cached-vector HTTP search p50 / raw SQL p50 = {cached_p50 / sql_p50:.2f} "
        f"({cached_p50 - sql_p50:.2f} ms of HTTP, auth, validation and transaction on top of SQL).",
        f"Cold HTTP search p50 / (embed_query p50 + sql_search p50) = {cold_p50 / parts_p50:.2f}.",
        f"HTTP ingest p50 / embed_document p50 = "
        f"{summary(timings['http_ingest'])[0] / summary(timings['embed_document'])[0]:.2f}.",
        f"Inside the service, one embedding call took {service_embed_ms:.2f} ms on average "
        "(its `memory_embedding_duration_seconds` histogram, all ingests and searches).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--write", type=Path, default=None, help="update this Markdown file")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(report)
    if args.write:
        write_block(args.write, "bench_api", report, title="Benchmarks",
                    heading="API latency (`scripts/bench_api.py`)")


if __name__ == "__main__":
    main()
