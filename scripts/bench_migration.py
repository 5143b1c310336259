"""How long migration 0008 (messages partitioned by tenant) and its downgrade take on a filled
table: what an operator upgrading a running deployment needs to plan the window for.

Two sources of rows:

  --data-dir DIR  the rows `scripts/bench_search.py --data-dir DIR` keeps (database
                  `bench_<--size>`, at the newest revision: 50% tenant, fifty 1% tenants, vectors
                  shaped like chat embeddings): `alembic downgrade 0007`, then `upgrade 0008`,
                  which leaves them as bench_search.py expects them
  otherwise       a private embedded PostgreSQL + pgvector, a database migrated to 0007 (the last
                  revision with one plain `messages` table) and filled with --rows messages of
                  random 384-dimensional unit vectors over --tenants tenants (one with half the
                  rows), every index of 0007 built after the rows (random vectors make the
                  slowest graphs to build); `upgrade 0008`, then `downgrade 0007`

Each step is its own run of Alembic, as `memory-layer migrate` would run it, with the database's
maintenance_work_mem set as docs/operations.md advises.

Usage: python scripts/bench_migration.py [--data-dir DIR [--size 1000000] | --rows 200000
           [--tenants 100]] [--maintenance-work-mem 2GB] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from alembic import command

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import write_block  # noqa: E402

from memory_layer.kit.db.embedded import start_embedded  # noqa: E402
from memory_layer.kit.db.engine import to_libpq_url  # noqa: E402
from memory_layer.kit.db.migrations import alembic_config  # noqa: E402
from memory_layer.kit.db.vectors import HNSW_INDEX_NAME, HNSW_INDEX_SQL  # noqa: E402

DIMS = 384

# Rows made inside PostgreSQL: a random unit vector each, tenants `t-half` (every other row) and
# `t-0` ... `t-<tenants - 2>`, interleaved as they arrive in a shared table.
FILL = f"""
INSERT INTO messages (tenant_id, id, conversation_id, role, content, importance, embedding,
                      embedding_model, embedding_status, embedding_next_attempt_at)
SELECT CASE WHEN n % 2 = 0 THEN 't-half' ELSE 't-' || (n / 2) % ($2 - 1) END,
       gen_random_uuid(), 'c-' || n % 50, 'user', 'message ' || n || ' about the garden', 0.5,
       l2_normalize((SELECT array_agg(random() - 0.5) FROM generate_series(1, {DIMS})
                     WHERE n >= 0)::vector),
       'bench', 'ready', NULL
FROM generate_series(1, $1) AS n
"""


async def fill(url: str, rows: int, tenants: int, work_mem: str) -> float:
    connection = await asyncpg.connect(to_libpq_url(url))
    try:
        started = time.perf_counter()
        await connection.execute(f"DROP INDEX {HNSW_INDEX_NAME}")
        await connection.execute(FILL, rows, tenants)
        await connection.execute(f"SET maintenance_work_mem = '{work_mem}'")
        await connection.execute("SET max_parallel_maintenance_workers = 2")
        await connection.execute(HNSW_INDEX_SQL)
        await connection.execute("VACUUM ANALYZE messages")
        return time.perf_counter() - started
    finally:
        await connection.close()


async def count(url: str) -> int:
    connection = await asyncpg.connect(to_libpq_url(url))
    try:
        return int(await connection.fetchval("SELECT count(*) FROM messages"))
    finally:
        await connection.close()


async def sizes(url: str) -> tuple[str, float]:
    connection = await asyncpg.connect(to_libpq_url(url))
    try:
        kind = await connection.fetchval(
            "SELECT relkind::text FROM pg_class WHERE oid = 'messages'::regclass")
        total = await connection.fetchval(
            "SELECT coalesce(sum(pg_total_relation_size(relid)), pg_total_relation_size('messages')) "
            "FROM pg_partition_tree('messages')")
        return ("partitioned" if kind == "p" else "plain"), total / 2**20
    finally:
        await connection.close()


def timed(action: str, url: str) -> float:
    config = alembic_config(url, DIMS)
    started = time.perf_counter()
    if action == "upgrade":
        command.upgrade(config, "0008")
    else:
        command.downgrade(config, "0007")
    return time.perf_counter() - started


async def run(args: argparse.Namespace) -> str:
    kept = args.data_dir is not None
    workdir = Path(tempfile.mkdtemp(prefix="ml-bench-migration-"))
    embedded = start_embedded(args.data_dir if kept else workdir / "db")
    if kept:
        embedded.started_here = True  # stop it at the end even if a previous run left it running
    database = f"bench_{args.size}" if kept else "bench_migration"
    try:
        url = embedded.url(database)
        if kept:
            rows = await count(url)
            described = (f"{rows:,} messages of `bench_search.py --data-dir` (a 50% tenant and "
                         "fifty 1% tenants, vectors shaped like chat embeddings)")
            steps = ("downgrade", "upgrade")
            start = "0008, as kept"
        else:
            embedded.ensure_database(database)
            await asyncio.to_thread(command.upgrade, alembic_config(url, DIMS), "0007")
            filled = await fill(url, args.rows, args.tenants, args.maintenance_work_mem)
            print(f"{args.rows:,} rows and their indexes in {filled:.0f} s", file=sys.stderr)
            described = (f"{args.rows:,} messages of {args.tenants} tenants (one with half the "
                         f"rows), random {DIMS}-dimensional unit vectors")
            steps = ("upgrade", "downgrade")
            start = "0007, as filled"
        # As docs/operations.md advises: the migrating sessions get memory for the graphs.
        embedded.server.psql(f"ALTER DATABASE {database} SET maintenance_work_mem = "
                             f"'{args.maintenance_work_mem}';")
        results: list[tuple[str, str, float, float | None]] = [(start, *await sizes(url), None)]
        for action in steps:
            seconds = await asyncio.to_thread(timed, action, url)
            print(f"{action}: {seconds:.1f} s", file=sys.stderr)
            results.append((f"{action} to {'0008' if action == 'upgrade' else '0007'}",
                            *await sizes(url), seconds))
    finally:
        embedded.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, {os.cpu_count()} "
        f"cores, Python {platform.python_version()}: `python scripts/bench_migration.py "
        + " ".join(sys.argv[1:]).replace(f" --write {args.write}", "").strip() + "`.",
        "",
        f"{described}, every index built; maintenance_work_mem "
        f"{args.maintenance_work_mem}, 2 parallel maintenance workers at most.",
        "",
        "| step | `messages` | table, indexes and graphs MB | seconds |",
        "|---|---|---:|---:|",
    ]
    for step, kind, megabytes, took in results:
        shown = "" if took is None else f"{took:.1f}"
        lines.append(f"| {step} | {kind} | {megabytes:,.0f} | {shown} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=lambda s: Path(s).expanduser(), default=None,
                        help="a directory bench_search.py --data-dir loaded")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--maintenance-work-mem", default="2GB")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(report)
    if args.write:
        write_block(args.write, "bench_migration", report,
                    title="Benchmarks",
                    heading="Rewriting `messages` into partitions (`scripts/bench_migration.py`)")


if __name__ == "__main__":
    main()
