"""What the keyword half of search costs as a tenant grows: the search statement of
search/repository.py on tenants of N rows, keyword and hybrid modes, latency and the database's CPU
per query, side by side with another checkout's statement (`--compare-src`) in one run.

Starts the embedded PostgreSQL + pgvector in a temporary directory, migrates it, and fills one
tenant per size with the chat turns of scripts/data/eval_conversations.json (496 turns, cycled,
each copy numbered and dated a minute apart) and random vectors (the HNSW index built after
the rows are in), then ANALYZEs. For each
statement source (this checkout's src/, then `--compare-src`'s, alternating between rounds) a
child process imports that memory_layer, builds the statement for each question of the set
exactly as the service does (default settings, the tenant's partition, exact vector order at
or below MEMORY_SEARCH_EXACT_MAX_ROWS rows) and runs it over one connection: wall time per
query, and the CPU its backend used (utime + stime of /proc/<backend pid>/stat) divided by the
queries. The query vector is a stored row's, so no model runs.

Usage: python scripts/bench_keyword.py [--sizes 1000,10000,50000] [--queries 100] [--rounds 2]
           [--compare-src /path/to/other/checkout] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from benchkit import process_cpu_seconds, write_block  # noqa: E402

DATASET = ROOT / "scripts" / "data" / "eval_conversations.json"


def questions(count: int) -> list[str]:
    data = json.loads(DATASET.read_text())
    return list(dict.fromkeys(str(q["question"]) for q in data["questions"]))[:count]


async def measure(args: argparse.Namespace) -> None:
    """In the child: time this checkout's statements (memory_layer from --src)."""
    sys.path.insert(0, str(Path(args.src) / "src"))
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from memory_layer.config import Settings
    from memory_layer.search import repository
    from memory_layer.search.cues import query_words
    from memory_layer.search.plan import SearchFilters, SearchMode, SearchPlan
    from memory_layer.search.repository import build_search_sql
    from memory_layer.search.scoring import ScoreWeights

    settings = Settings(_env_file=None)
    from memory_layer.kit.db.engine import to_async_url

    engine = create_async_engine(to_async_url(args.url))
    results = []
    async with engine.connect() as conn:
        backend = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        for size in args.sizes:
            tenant = f"kw-{size}"
            row = (await conn.execute(text(
                "SELECT embedding::text, embedding_model, tableoid::regclass::text FROM messages"
                " WHERE tenant_id = :t LIMIT 1"), {"t": tenant})).one()
            vector = [float(x) for x in row[0].strip("[]").split(",")]
            # What the service adds for a tenant of this size, where the checkout has it.
            extra: dict[str, Any] = (
                {"sampled_statistics": repository.sampled_statistics(size)}
                if hasattr(repository, "sampled_statistics") else {})
            for mode in ("keyword", "hybrid"):
                common: dict[str, Any] = dict(
                    extra, tenant_id=tenant, query_vector=None if mode == "keyword" else vector,
                    mode=SearchMode(mode), fusion=settings.search_fusion, model=row[1],
                    limit=50, candidate_pool=50, filters=SearchFilters(),
                    weights=ScoreWeights.from_settings(settings), rrf_k=settings.search_rrf_k,
                    keyword_weight=settings.search_keyword_weight,
                    exact=size <= settings.search_exact_max_rows, table=row[2],
                    speaker_boost=settings.search_speaker_boost,
                    keyword_scoring=settings.search_keyword_scoring)

                def plan(query: str, common: dict[str, Any] = common) -> SearchPlan:
                    return SearchPlan(query_text=query, words=tuple(query_words(query)), **common)

                for query in args.queries[:10]:  # warm the cache and the plans
                    statement, params = build_search_sql(plan(query))
                    await conn.execute(statement, params)
                latencies = []
                cpu_before = 1000 * process_cpu_seconds(backend)
                for query in args.queries:
                    statement, params = build_search_sql(plan(query))
                    started = time.perf_counter()
                    await conn.execute(statement, params)
                    latencies.append((time.perf_counter() - started) * 1000)
                cpu = (1000 * process_cpu_seconds(backend) - cpu_before) / len(args.queries)
                latencies.sort()
                results.append({"size": size, "mode": mode, "p50": statistics.median(latencies),
                                "p95": latencies[int(0.95 * (len(latencies) - 1))], "cpu": cpu})
    await engine.dispose()
    print(json.dumps(results))


def fill(url: str, sizes: list[int]) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url)
        turns = [str(t["text"]) for c in json.loads(DATASET.read_text())["conversations"]
                 for t in c["turns"]]
        # The HNSW index is built once after the rows are in (faster than row by row).
        hnsw = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'messages'"
            " AND indexdef LIKE '%USING hnsw%'")
        for index in hnsw:
            await conn.execute(f'DROP INDEX "{index["indexname"]}"')
        await conn.execute("CREATE TEMP TABLE turns (n int, content text)")
        await conn.copy_records_to_table("turns", records=list(enumerate(turns)))
        for size in sizes:
            await conn.execute(f"""
                INSERT INTO messages (tenant_id, id, conversation_id, role, content, metadata,
                    importance, created_at, embedding, embedding_model, embedding_status, kind)
                SELECT 'kw-{size}', gen_random_uuid(), 'c' || (g / 50), 'user',
                       t.content || ' (' || g || ')', '{{}}', 0.5,
                       now() - make_interval(mins => {size} - g),
                       r.v::vector,
                       'all-MiniLM-L6-v2', 'ready', 'message'
                FROM generate_series(0, {size} - 1) g
                JOIN turns t ON t.n = g % {len(turns)}
                CROSS JOIN LATERAL (  -- correlated on g: a vector of its own per row
                    SELECT array_agg(random() - 0.5) AS v FROM generate_series(1, 384) d
                    WHERE d > g * 0) r""")
        for index in hnsw:
            await conn.execute(index["indexdef"])
        await conn.execute("ANALYZE messages")
        await conn.close()

    asyncio.run(run())


def report(args: argparse.Namespace, runs: dict[str, list[list[dict[str, Any]]]],
           started: str) -> str:
    lines = [
        f"Run {started} on {platform.machine()}, {os.cpu_count()} cores (shared: other processes "
        f"ran on this machine, so compare within the table), {len(args.queries)} questions per "
        f"size and mode, {args.rounds} rounds (median of the rounds' p50 and p95; CPU is the "
        "database backend's per query): `python scripts/bench_keyword.py "
        f"--sizes {','.join(map(str, args.sizes))} --queries {len(args.queries)}"
        + (" --compare-src <previous commit>`" if args.compare_src else "`"),
        "",
        "| tenant rows | mode | statement | p50 ms | p95 ms | DB CPU ms / query |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for size in args.sizes:
        for mode in ("keyword", "hybrid"):
            for label, rounds in runs.items():
                picked = [r for run in rounds for r in run if r["size"] == size and r["mode"] == mode]
                p50 = statistics.median(r["p50"] for r in picked)
                p95 = statistics.median(r["p95"] for r in picked)
                cpu = statistics.median(r["cpu"] for r in picked)
                lines.append(f"| {size:,} | {mode} | {label} | {p50:.1f} | {p95:.1f} | {cpu:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1_000, 10_000, 50_000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compare-src", type=Path, default=None,
                        help="another checkout whose statement runs beside this one's")
    parser.add_argument("--write", type=Path, default=None)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--src", default=str(ROOT), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        args.queries = questions(args.queries)
        asyncio.run(measure(args))
        return

    sys.path.insert(0, str(ROOT / "src"))
    from memory_layer.kit.db.embedded import start_embedded
    from memory_layer.kit.db.engine import to_libpq_url
    from memory_layer.kit.db.migrations import upgrade_to_head

    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    args.queries = questions(args.queries)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-keyword-"))
    server = start_embedded(data_dir, {"shared_buffers": "256MB"})
    try:
        server.ensure_database()
        upgrade_to_head(server.url(), 384)
        fill(to_libpq_url(server.url()), args.sizes)
        sources = {"this checkout": ROOT}
        if args.compare_src is not None:
            sources["compared"] = args.compare_src.resolve()
        runs: dict[str, list[list[dict[str, Any]]]] = {label: [] for label in sources}
        for number in range(args.rounds):
            order = list(sources.items())
            if number % 2:
                order.reverse()
            for label, src in order:
                out = subprocess.run(
                    [sys.executable, __file__, "--measure", "--url", server.url(), "--src", str(src),
                     "--sizes", ",".join(map(str, args.sizes)), "--queries", str(len(args.queries))],
                    check=True, capture_output=True, text=True)
                runs[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"round {number + 1}: {label} done", flush=True)
        text = report(args, runs, started)
        print(text)
        if args.write is not None:
            write_block(args.write, "bench_keyword", text, title="Benchmarks",
                        heading="Keyword search as a tenant grows (`scripts/bench_keyword.py`)")
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
