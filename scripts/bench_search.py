"""Search at scale: raw SQL against the HTTP API on the same rows, plus HNSW recall, in one run.

For each N (default 10k and 100k; add 1000000 where the machine allows): loads N synthetic
384-dimensional rows with COPY across 100 tenants (1% of the rows each), builds the HNSW index,
starts `memory-layer serve` on the data (fake provider, so each query text has a known vector),
and measures on the same queries, interleaved:

  (a) sql    the nearest-neighbour query through asyncpg:
             SELECT id FROM messages WHERE tenant_id = $1 ORDER BY embedding <=> $2 LIMIT 10
  (b) http   POST /v1/memory/search {mode: vector, top_k: 10} with the query vector cached
  (c) recall recall@10 of the HNSW answer against exact search (the same query with index scans
             disabled) for a tenant holding 1% of the rows; also the recall of the service's own
             answer (tenants up to MEMORY_SEARCH_EXACT_MAX_ROWS are searched exactly)

Usage: python scripts/bench_search.py [--sizes 10000,100000,1000000] [--queries 200]
           [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import numpy as np
from pgvector import Vector

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import free_port, wait_ready, write_block  # noqa: E402

from memory_layer.embeddings.providers.fake import FakeEmbeddingProvider  # noqa: E402
from memory_layer.kit.db.embedded import start_embedded  # noqa: E402
from memory_layer.kit.db.engine import to_libpq_url  # noqa: E402
from memory_layer.kit.db.migrations import upgrade_to_head  # noqa: E402

DIMS = 384
TENANTS = 100
CLUSTERS = 512
API_KEY = "bench-search-key"
MODEL = FakeEmbeddingProvider(DIMS).model_name
NN_SQL = "SELECT id FROM messages WHERE tenant_id = $1 ORDER BY embedding <=> $2::vector LIMIT 10"


async def copy_rows(connection: asyncpg.Connection, n: int, seed: int) -> None:
    """COPY n rows of clustered unit vectors (chat embeddings are clustered, not uniform)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(CLUSTERS, DIMS))
    chunk = 20_000

    async def lines() -> AsyncIterator[bytes]:
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            vectors = centers[rng.integers(0, CLUSTERS, size)] + rng.normal(scale=0.6, size=(size, DIMS))
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            out = []
            for i in range(size):
                row = start + i
                literal = "[" + ",".join(f"{v:.6f}" for v in vectors[i]) + "]"
                out.append(
                    f"t-{row % TENANTS}\t{uuid.uuid4()}\tc-{row % 50}\tuser\tsynthetic row {row}\t"
                    f"0.5\t{literal}\t{MODEL}\tready\n"
                )
            yield "".join(out).encode()

    await connection.copy_to_table(
        "messages",
        source=lines(),
        columns=["tenant_id", "id", "conversation_id", "role", "content", "importance",
                 "embedding", "embedding_model", "embedding_status"],
        format="text",
    )


@dataclass
class SizeResult:
    n: int
    load_seconds: float
    index_seconds: float
    sql: list[float]
    http: list[float]
    recall: float
    agree: int
    service_recall: float


async def measure_size(url: str, n: int, queries: int, seed: int) -> SizeResult:
    connection = await asyncpg.connect(to_libpq_url(url))
    await connection.execute("TRUNCATE messages")
    await connection.execute("DROP INDEX IF EXISTS ix_messages_embedding_hnsw")
    started = time.perf_counter()
    await copy_rows(connection, n, seed)
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    await connection.execute("SET maintenance_work_mem = '3GB'")
    await connection.execute("SET max_parallel_maintenance_workers = 2")
    await connection.execute(
        "CREATE INDEX ix_messages_embedding_hnsw ON messages USING hnsw "
        "(embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
    )
    await connection.execute("VACUUM ANALYZE messages")
    index_seconds = time.perf_counter() - started
    # The same per-connection settings the service's engine uses.
    await connection.execute("SET hnsw.iterative_scan = relaxed_order")
    await connection.execute("SET hnsw.ef_search = 100")

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
    env.update(MEMORY_DATABASE_URL=url, MEMORY_EMBEDDING_PROVIDER="fake", MEMORY_API_KEYS=API_KEY,
               MEMORY_LOG_LEVEL="warning", MEMORY_WORKER_ENABLED="false",
               # Hundreds of requests a minute from one address: the per-address limit is off.
               MEMORY_GLOBAL_RATE_LIMIT="off")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "memory-layer"), "serve", "--port", str(port)],
        env=env, cwd=ROOT,
    )
    provider = FakeEmbeddingProvider(DIMS)
    sql: list[float] = []
    http: list[float] = []
    hits = 0
    service_hits = 0
    agree = 0
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                     headers={"X-API-Key": API_KEY}) as client:
            await wait_ready(client)
            texts = [f"bench query {i}" for i in range(queries)]
            tenant_of = [f"t-{i % TENANTS}" for i in range(queries)]
            for i, query in enumerate(texts):  # warm the service's query-vector cache
                body = {"tenant_id": tenant_of[i], "query": query, "mode": "vector", "top_k": 10}
                (await client.post("/v1/memory/search", json=body)).raise_for_status()
            for i, query in enumerate(texts):
                literal = Vector(provider.embed_sync(query)).to_text()
                started = time.perf_counter()
                rows = await connection.fetch(NN_SQL, tenant_of[i], literal)
                sql.append(time.perf_counter() - started)

                body = {"tenant_id": tenant_of[i], "query": query, "mode": "vector", "top_k": 10}
                started = time.perf_counter()
                response = await client.post("/v1/memory/search", json=body)
                http.append(time.perf_counter() - started)
                response.raise_for_status()
                http_ids = [item["message_id"] for item in response.json()["items"]]
                agree += set(http_ids) == {str(r["id"]) for r in rows}

                async with connection.transaction():
                    await connection.execute("SET LOCAL enable_indexscan = off")
                    exact = await connection.fetch(NN_SQL, tenant_of[i], literal)
                hits += len({r["id"] for r in rows} & {r["id"] for r in exact})
                service_hits += len(set(http_ids) & {str(r["id"]) for r in exact})
    finally:
        server.terminate()
        server.wait(timeout=30)
        await connection.close()
    return SizeResult(n, load_seconds, index_seconds, sql, http, hits / (10 * queries), agree,
                      service_hits / (10 * queries))


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return 1000 * ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def run(args: argparse.Namespace) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="ml-bench-search-"))
    embedded = start_embedded(workdir)
    results: list[SizeResult] = []
    try:
        embedded.ensure_database()
        url = embedded.url()
        await asyncio.to_thread(upgrade_to_head, url, DIMS)
        for n in args.sizes:
            results.append(await measure_size(url, n, args.queries, seed=n))
            print(f"done N={n}", file=sys.stderr)
    finally:
        embedded.stop()

    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M UTC} on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}: `python scripts/bench_search.py "
        f"--sizes {','.join(map(str, args.sizes))} --queries {args.queries}`.",
        "",
        f"{TENANTS} tenants with 1% of the rows each; clustered unit vectors ({CLUSTERS} centres); "
        "HNSW m=16, ef_construction=64, ef_search=100, iterative scans (relaxed order). Each query "
        "ran (a) and (b) back to back; (b) used a query text whose vector the service had cached.",
        "",
        "| N | COPY s | index s | (a) SQL p50 ms | (a) p95 | (b) HTTP p50 ms | (b) p95 | (b)/(a) p50 "
        "| (c) HNSW recall@10 | service recall@10 | same ids as (a) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.n:,} | {r.load_seconds:.1f} | {r.index_seconds:.1f} | {p(r.sql, .5):.2f} | "
            f"{p(r.sql, .95):.2f} | {p(r.http, .5):.2f} | {p(r.http, .95):.2f} | "
            f"{p(r.http, .5) / p(r.sql, .5):.2f} | {r.recall:.3f} | {r.service_recall:.3f} | "
            f"{r.agree}/{len(r.sql)} |"
        )
    if len(results) > 1:
        first, last = results[0], results[-1]
        overhead = statistics.fmean(h - s for h, s in zip(last.http, last.sql, strict=True))
        lines += ["", f"p50 HTTP at {last.n:,} / p50 HTTP at {first.n:,} = "
                  f"{p(last.http, .5) / p(first.http, .5):.2f}; raw SQL: "
                  f"{p(last.sql, .5) / p(first.sql, .5):.2f}. Mean HTTP overhead over SQL: "
                  f"{overhead * 1000:.2f} ms "
                  f"at {last.n:,}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--write", type=Path, default=None, help="update this Markdown file")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(report)
    if args.write:
        write_block(args.write, "bench_search", report, title="Benchmarks",
                    heading="Search at scale (`scripts/bench_search.py`)")


if __name__ == "__main__":
    main()
