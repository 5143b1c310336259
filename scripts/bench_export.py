"""Export memory: the server's RSS while it streams a large tenant as NDJSON, in one run.

Starts a private embedded PostgreSQL + pgvector and `memory-layer serve` (fake embedder: an
export embeds nothing). For each size N (default 20,000 then 200,000, so flat memory shows as the
same peak at both sizes) it loads the tenant up to N messages with COPY (chat-like texts, small
metadata, a 384-dimensional vector each) and, while a thread samples the server process's VmRSS
from /proc/<pid>/status every 50 ms, measures:

  (a) GET /v1/export                          RSS before / peak during / after; lines/s, MB/s
  (b) GET /v1/export?include_embeddings=true  the same, with every vector in the lines
  (c) POST /v1/import of (a)'s file into another tenant, streamed from disk: the same RSS
      figures and lines/s (rows stored pending; no worker runs)

The HNSW index is dropped before loading: neither path uses it and COPY is far faster without it.

Usage: python scripts/bench_export.py [--sizes 20000,200000] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import free_port, wait_ready, write_block  # noqa: E402

from memory_layer.embeddings.providers.fake import FakeEmbeddingProvider  # noqa: E402
from memory_layer.kit.db.embedded import start_embedded  # noqa: E402
from memory_layer.kit.db.engine import to_libpq_url  # noqa: E402
from memory_layer.kit.db.migrations import upgrade_to_head  # noqa: E402

DIMS = 384
TENANT = "t-export"
IMPORT_TENANT = "t-import"
API_KEY = "bench-export-key"
MODEL = FakeEmbeddingProvider(DIMS).model_name
DATASET = ROOT / "scripts" / "data" / "eval_conversations.json"
VECTOR_POOL = 1000  # distinct vectors, cycled: the export's cost does not depend on their values
SAMPLE_SECONDS = 0.05


def chat_texts() -> list[str]:
    data = json.loads(DATASET.read_text())
    return [turn["text"] for conv in data["conversations"] for turn in conv["turns"]]


async def copy_rows(connection: asyncpg.Connection, first_row: int, n: int) -> None:
    """COPY rows first_row .. n-1 of the tenant (row i is created i seconds after the start)."""
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(VECTOR_POOL, DIMS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    literals = ["[" + ",".join(f"{v:.8g}" for v in vector) + "]" for vector in vectors]
    texts = chat_texts()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    chunk = 20_000

    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")

    async def lines() -> AsyncIterator[bytes]:
        for first in range(first_row, n, chunk):
            out = []
            for i in range(first, min(n, first + chunk)):
                created = (start + timedelta(seconds=i)).isoformat()
                metadata = json.dumps({"source": "bench", "n": i})
                out.append(
                    f"{TENANT}\t{uuid.uuid4()}\tc-{i % 2000}\tu-{i % 100}\t"
                    f"{'user' if i % 2 == 0 else 'assistant'}\t"
                    f"{escape(texts[i % len(texts)])} (#{i})\t{metadata}\t0.5\t{created}\t"
                    f"cm-{i}\t{literals[i % VECTOR_POOL]}\t{MODEL}\tready\t\\N\n"
                )
            yield "".join(out).encode()

    await connection.copy_to_table(
        "messages",
        source=lines(),
        columns=["tenant_id", "id", "conversation_id", "user_id", "role", "content", "metadata",
                 "importance", "created_at", "client_message_id", "embedding", "embedding_model",
                 "embedding_status", "embedding_next_attempt_at"],
        format="text",
    )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class RssSampler:
    """Samples a process's RSS every 50 ms on a thread (the event loop is busy reading)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(rss_kib(self.pid))
            time.sleep(SAMPLE_SECONDS)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Run:
    n: int
    name: str
    lines: int
    nbytes: int
    seconds: float
    before: int
    peak: int
    after: int
    samples: int


async def settle(pid: int) -> int:
    """RSS once the process is idle again (the allocator keeps what it freed, so this is the
    high-water mark of what stays, not zero growth)."""
    await asyncio.sleep(1.0)
    return rss_kib(pid)


async def measure_export(
    client: httpx.AsyncClient, pid: int, n: int, name: str, params: dict[str, str],
    save: Path | None,
) -> Run:
    before = await settle(pid)
    lines = nbytes = 0
    out = save.open("wb") if save else None
    with RssSampler(pid) as sampler:
        started = time.perf_counter()
        async with client.stream("GET", "/v1/export", params=params) as response:
            response.raise_for_status()
            async for chunk in response.aiter_raw():
                lines += chunk.count(b"\n")
                nbytes += len(chunk)
                if out:
                    out.write(chunk)
        seconds = time.perf_counter() - started
    if out:
        out.close()
    assert lines == n, (lines, n)
    return Run(n, name, lines, nbytes, seconds, before, max(sampler.samples), await settle(pid),
               len(sampler.samples))


async def measure_import(client: httpx.AsyncClient, pid: int, n: int, source: Path) -> Run:
    before = await settle(pid)

    async def body() -> AsyncIterator[bytes]:
        with source.open("rb") as handle:
            while block := handle.read(1 << 16):
                yield block

    with RssSampler(pid) as sampler:
        started = time.perf_counter()
        response = await client.post(
            "/v1/import", params={"tenant_id": f"{IMPORT_TENANT}-{n}"}, content=body(),
            headers={"content-type": "application/x-ndjson"},
        )
        seconds = time.perf_counter() - started
    response.raise_for_status()
    report = response.json()
    assert report["stored"] == report["lines_read"], report
    return Run(n, "(c) POST /v1/import (file of (a))", report["stored"], source.stat().st_size,
               seconds, before, max(sampler.samples), await settle(pid), len(sampler.samples))


async def load(url: str, first_row: int, n: int) -> float:
    connection = await asyncpg.connect(to_libpq_url(url))
    try:
        started = time.perf_counter()
        await copy_rows(connection, first_row, n)
        await connection.execute("VACUUM ANALYZE messages")
        return time.perf_counter() - started
    finally:
        await connection.close()


async def run(args: argparse.Namespace) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="ml-bench-export-"))
    embedded = start_embedded(workdir)
    runs: list[Run] = []
    loads: list[str] = []
    try:
        embedded.ensure_database()
        url = embedded.url()
        await asyncio.to_thread(upgrade_to_head, url, DIMS)
        connection = await asyncpg.connect(to_libpq_url(url))
        await connection.execute("DROP INDEX IF EXISTS ix_messages_embedding_hnsw")
        await connection.close()

        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
        env.update(MEMORY_DATABASE_URL=url, MEMORY_EMBEDDING_PROVIDER="fake",
                   MEMORY_API_KEYS=API_KEY, MEMORY_LOG_LEVEL="warning",
                   MEMORY_WORKER_ENABLED="false")
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "memory-layer"), "serve", "--port", str(port)],
            env=env, cwd=ROOT,
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600,
                                         headers={"X-API-Key": API_KEY}) as client:
                await wait_ready(client)
                # Warm the code paths (imports, pools) so "before" is the steady state.
                (await client.get("/v1/export", params={"tenant_id": "t-empty"})).raise_for_status()
                loaded = 0
                for n in args.sizes:
                    seconds = await load(url, loaded, n)
                    loads.append(f"{n - loaded:,} rows in {seconds:.1f} s")
                    print(f"loaded up to {n} rows ({seconds:.1f} s)", file=sys.stderr)
                    loaded = n
                    saved = workdir / "export.ndjson"
                    runs.append(await measure_export(
                        client, server.pid, n, "(a) GET /v1/export", {"tenant_id": TENANT}, saved
                    ))
                    runs.append(await measure_export(
                        client, server.pid, n, "(b) GET /v1/export?include_embeddings=true",
                        {"tenant_id": TENANT, "include_embeddings": "true"}, None,
                    ))
                    runs.append(await measure_import(client, server.pid, n, saved))
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        embedded.stop()
        # The database and the saved export take about 2 GB at 200,000 rows.
        shutil.rmtree(workdir, ignore_errors=True)

    rows = [
        f"| {r.n:,} | {r.name} | {r.lines:,} | {r.nbytes / 1e6:,.1f} | {r.seconds:.1f} | "
        f"{r.lines / r.seconds:,.0f} | {r.nbytes / 1e6 / r.seconds:.1f} | {r.before / 1024:.0f} | "
        f"{r.peak / 1024:.0f} | {r.after / 1024:.0f} | {(r.peak - r.before) / 1024:+.0f} | "
        f"{r.samples} |"
        for r in runs
    ]
    return "\n".join([
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M UTC} on {platform.machine()}, {os.cpu_count()} "
        f"cores, Python {platform.python_version()}: `python scripts/bench_export.py --sizes "
        f"{','.join(map(str, args.sizes))}`.",
        "",
        "One tenant of chat texts with small metadata and 384-dimensional vectors, loaded with "
        f"COPY ({'; then '.join(loads)}). `memory-layer serve` runs as its own process; its RSS "
        "(VmRSS) is sampled every 50 ms during each request, \"before\" and \"after\" 1 s before "
        "and after it. The client (httpx, on the same 2 cores) reads the body as it arrives; "
        "(c) sends (a)'s file from disk, chunked, into a new tenant (rows stored pending).",
        "",
        "| N | request | lines | MB | s | lines/s | MB/s | RSS before MiB | RSS peak MiB | "
        "RSS after MiB | peak - before MiB | samples |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")],
                        default=[20_000, 200_000])
    parser.add_argument("--write", type=Path, default=None, help="update this Markdown file")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(report)
    if args.write:
        write_block(args.write, "bench_export", report, title="Benchmarks",
                    heading="Export and import memory (`scripts/bench_export.py`)")


if __name__ == "__main__":
    main()
