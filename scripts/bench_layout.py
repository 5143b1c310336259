"""Table layouts for tenant-filtered vector search at scale, raw SQL, side by side in one run.

Runs on the rows `scripts/bench_search.py --data-dir DIR` loaded and kept (database `bench_<N>`:
one tenant with 50% of the rows, fifty with 1% each, interleaved). The service's search takes 40
candidates for its ranking, so every query here asks for 40, and recall@10 is the share of the
exact top 10 (index scans off, on the shared table) found among them:

  shared       the rows in one plain table, as `messages` was until migration 0008 (only the
               columns search reads: `bench_layout_shared`, built once and kept between runs),
               one HNSW graph (m 16, ef_construction 128) and a tenant index;
               `hnsw`: ORDER BY embedding <=> q LIMIT 40 (ef_search 200, relaxed iterative scans);
               `exact`: the same order with `+ 0`, every vector of the tenant compared
  covering     the shared table with an index on (tenant_id) INCLUDE (id, embedding) for the
               tenant's ready rows: exact search reads the tenant's vectors contiguously (an
               index-only scan) instead of one heap page per row; built for the run, then dropped
  partitioned  the service's own `messages`, hash-partitioned by tenant into 16 (migration
               0008), a graph per partition: a mid-sized tenant shares its graph with a few
               tenants, not with all (its rows are the service's full rows, wider than the
               shared copy's)

Queries: --queries rows of each class (chosen by a hash of their id, so every run and layout
asks the same), their own vectors as the query. Each layout's relations are read into
PostgreSQL's cache (pg_prewarm) before it is measured. Exact search for the 50% tenant (half a
million vectors) is not run: no layout makes it competitive.

Usage: python scripts/bench_layout.py --data-dir DIR [--size 1000000]
           [--queries 100] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from pgvector.asyncpg import register_vector

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import percentile, write_block  # noqa: E402

from memory_layer.kit.db.embedded import start_embedded  # noqa: E402
from memory_layer.kit.db.engine import to_libpq_url  # noqa: E402

POOL = 40
HNSW_SQL = (
    "SELECT id FROM {table} WHERE tenant_id = $1 AND embedding_status = 'ready' "
    "ORDER BY embedding <=> $2 LIMIT 40"
)
EXACT_SQL = (
    "SELECT id FROM {table} WHERE tenant_id = $1 AND embedding_status = 'ready' "
    "ORDER BY (embedding <=> $2) + 0 LIMIT {limit}"
)
SHARED = "bench_layout_shared"
COVER = "bench_layout_cover"
CLASSES = {"50%": "tenant_id = 't-half'", "1%": "tenant_id <> 't-half'"}


async def relation_mb(connection: asyncpg.Connection, pattern: str) -> float:
    size = await connection.fetchval(
        "SELECT coalesce(sum(pg_relation_size(oid)), 0) FROM pg_class WHERE relname LIKE $1",
        pattern,
    )
    return int(size) / 2**20


async def prewarm(connection: asyncpg.Connection, patterns: list[str]) -> None:
    for pattern in patterns:
        names = await connection.fetch(
            "SELECT oid::regclass::text FROM pg_class WHERE relkind IN ('r', 'i') AND relname LIKE $1",
            pattern,
        )
        for (name,) in names:
            await connection.execute("SELECT pg_prewarm($1::regclass)", name)


async def build_shared(connection: asyncpg.Connection) -> float:
    """The plain copy of the rows, its tenant index and its one graph; seconds taken (0 when
    kept)."""
    if await connection.fetchval(f"SELECT to_regclass('{SHARED}_hnsw') IS NOT NULL"):
        return 0.0
    started = time.perf_counter()
    # In one transaction: an interrupted build leaves nothing behind to be taken for a kept one.
    async with connection.transaction():
        await connection.execute(f"DROP TABLE IF EXISTS {SHARED}")
        await connection.execute(
            f"CREATE TABLE {SHARED} (tenant_id varchar NOT NULL, id uuid NOT NULL, embedding "
            "vector(384), embedding_status varchar NOT NULL, PRIMARY KEY (tenant_id, id))"
        )
        # Rows of every tenant interleaved, as they arrive in one table (in random order: the
        # rows were loaded with one created_at, and ids are random).
        await connection.execute(
            f"INSERT INTO {SHARED} SELECT tenant_id, id, embedding, embedding_status "
            "FROM messages ORDER BY id"
        )
        await connection.execute(
            f"CREATE INDEX {SHARED}_hnsw ON {SHARED} USING hnsw (embedding vector_cosine_ops) "
            "WITH (m = 16, ef_construction = 128)"
        )
    await connection.execute(f"VACUUM ANALYZE {SHARED}")
    return time.perf_counter() - started


async def measure(
    connection: asyncpg.Connection, sql: str, queries: list[Any], truth: list[set[Any]]
) -> tuple[float, float, float]:
    """p50 and p95 in ms, and recall@10 of the exact top 10 within the 40 returned."""
    for tenant, vector in queries[:3]:
        await connection.fetch(sql, tenant, vector)
    times: list[float] = []
    found: list[float] = []
    for (tenant, vector), wanted in zip(queries, truth, strict=True):
        started = time.perf_counter()
        rows = await connection.fetch(sql, tenant, vector)
        times.append(time.perf_counter() - started)
        found.append(len({row[0] for row in rows} & wanted) / len(wanted))
    return (
        1000 * statistics.median(times),
        1000 * percentile(times, 0.95),
        statistics.mean(found),
    )


async def run(args: argparse.Namespace) -> str:
    embedded = start_embedded(args.data_dir)
    embedded.started_here = True  # stop it at the end even if a previous run left it running
    rows: list[str] = []
    try:
        connection = await asyncpg.connect(
            to_libpq_url(embedded.url(f"bench_{args.size}")),
            server_settings={"hnsw.ef_search": "200", "hnsw.iterative_scan": "relaxed_order",
                             "maintenance_work_mem": args.maintenance_work_mem},
            command_timeout=7200,
        )
        await register_vector(connection)
        await connection.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        shared_s = await build_shared(connection)
        counts = await connection.fetch(
            "SELECT count(*) FROM messages GROUP BY tableoid ORDER BY 1 DESC"
        )
        queries: dict[str, list[Any]] = {}
        truth: dict[str, list[set[Any]]] = {}
        exact_10 = EXACT_SQL.format(table="messages", limit=10)
        await connection.execute("SET enable_indexscan = off")
        for label, where in CLASSES.items():
            queries[label] = list(await connection.fetch(
                f"SELECT tenant_id, embedding FROM messages WHERE {where} "
                f"ORDER BY md5(id::text) LIMIT {args.queries}"
            ))
            truth[label] = [
                {row[0] for row in await connection.fetch(exact_10, tenant, vector)}
                for tenant, vector in queries[label]
            ]
        await connection.execute("RESET enable_indexscan")

        def row(layout: str, label: str, kind: str, figures: tuple[float, float, float]) -> None:
            p50, p95, recall = figures
            rows.append(f"| {layout} | {label} | {kind} | {p50:.2f} | {p95:.2f} | {recall:.3f} |")

        await prewarm(connection, [f"{SHARED}%"])
        for label in CLASSES:
            row("shared", label, "hnsw", await measure(
                connection, HNSW_SQL.format(table=SHARED), queries[label], truth[label]))
        row("shared", "1%", "exact", await measure(
            connection, EXACT_SQL.format(table=SHARED, limit=POOL), queries["1%"], truth["1%"]))
        shared_mb = await relation_mb(connection, f"{SHARED}%")

        started = time.perf_counter()
        await connection.execute(
            f"CREATE INDEX {COVER} ON {SHARED} (tenant_id) INCLUDE (id, embedding) "
            "WHERE embedding_status = 'ready'"
        )
        await connection.execute(f"VACUUM ANALYZE {SHARED}")
        cover_s = time.perf_counter() - started
        cover_mb = await relation_mb(connection, COVER)
        try:
            await prewarm(connection, [COVER])
            row("covering", "1%", "exact", await measure(
                connection, EXACT_SQL.format(table=SHARED, limit=POOL), queries["1%"],
                truth["1%"]))
        finally:
            await connection.execute(f"DROP INDEX {COVER}")

        await prewarm(connection, ["messages_p%"])
        for label in CLASSES:
            row("partitioned", label, "hnsw", await measure(
                connection, HNSW_SQL.format(table="messages"), queries[label], truth[label]))
        row("partitioned", "1%", "exact", await measure(
            connection, EXACT_SQL.format(table="messages", limit=POOL), queries["1%"],
            truth["1%"]))
        await connection.close()
    finally:
        embedded.stop()

    load = os.getloadavg()[0]
    built = f"built in {shared_s:.0f} s this run" if shared_s else "kept from an earlier run"
    return "\n".join([
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, {os.cpu_count()} "
        f"cores, Python {platform.python_version()}: `python scripts/bench_layout.py "
        + " ".join(a for a in sys.argv[1:] if a not in ("--write", str(args.write))) + "`.",
        "",
        f"{args.size:,} rows of `bench_search.py` (50% tenant, fifty 1% tenants); {args.queries} "
        f"queries per class, each asking for {POOL} candidates, ef_search 200, relaxed iterative "
        f"scans; recall@10: the exact top 10 found among the {POOL}. Shared copy: "
        f"{shared_mb:,.0f} MB with its graph, {built}. Covering index: {cover_mb:,.0f} MB, built "
        f"in {cover_s:.0f} s. Partitioned: the service's `messages`, 16 hash partitions of "
        f"{', '.join(str(int(r[0])) for r in counts)} rows. Load average at the end: {load:.1f}.",
        "",
        "| layout | class | search | p50 ms | p95 ms | recall@10 |",
        "|---|---|---|---:|---:|---:|",
        *rows,
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=lambda s: Path(s).expanduser(), required=True,
                        help="a directory bench_search.py --data-dir loaded")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--maintenance-work-mem", default="4GB")
    parser.add_argument("--write", type=Path, default=None, help="update this Markdown file")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(report)
    if args.write:
        write_block(args.write, "bench_table_layouts", report, title="Benchmarks",
                    heading="Table layouts for search at scale (`scripts/bench_layout.py`)")


if __name__ == "__main__":
    main()
