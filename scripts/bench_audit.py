"""What a tenant's audit_level costs per request: admin (nothing recorded) beside writes and all.

    python scripts/bench_audit.py [--messages 2000] [--rounds 300] [--write docs/benchmarks.md]

Starts a private embedded PostgreSQL in a temporary directory (stopped at the end) and the app in
this process (fake embedder, inline embeddings, an ASGI client: no socket), fills three tenants
with the same messages, and gives them the audit levels `admin`, `writes` and `all`. Then it
sends, round after round, the same requests to the three tenants in turn (so each sees the same
machine state): a search (GET /v1/memory/search, one of nine queries: their vectors cached after
the first round), a write (POST /v1/messages), and a read by id (GET /v1/messages/{id}). For each
path and level it reports the median and p95 latency, this process's CPU per request (the app, the
driver and the client: `time.process_time`) and the database server's CPU per request (utime +
stime of every PostgreSQL process, from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import percentile, server_cpu_seconds, write_block  # noqa: E402

from memory_layer.app import create_app  # noqa: E402
from memory_layer.config import Settings  # noqa: E402
from memory_layer.kit.db.embedded import start_embedded  # noqa: E402
from memory_layer.kit.db.engine import to_libpq_url  # noqa: E402
from memory_layer.kit.db.migrations import upgrade_to_head  # noqa: E402

ADMIN_KEY = "bench-admin-key"
LEVELS = ("admin", "writes", "all")
TOPICS = ["python", "travel", "cooking", "music", "finance", "health", "family", "work", "garden"]
QUERIES = [f"what did I say about {topic}" for topic in TOPICS]


class Samples:
    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu = 0.0
        self.db_cpu = 0.0


async def run(messages: int, rounds: int) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="memory-layer-bench-audit-"))
    server = start_embedded(workdir)
    try:
        server.ensure_database("bench")
        await asyncio.to_thread(upgrade_to_head, server.url("bench"), 384)
        settings = Settings(
            _env_file=None,
            database_url=server.url("bench"),
            data_dir=workdir,
            admin_api_keys=ADMIN_KEY,
            embedding_provider="fake",
            embedding_dimensions=384,
            worker_enabled=False,
            global_rate_limit="off",
            tenant_rate_limit="off",
            log_level="warning",
        )
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        headers = {"X-API-Key": ADMIN_KEY}
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=headers, timeout=60
        ) as client:
            kept: dict[str, str] = {}
            for level in LEVELS:
                tenant = f"audit-{level}"
                answer = await client.put(
                    f"/v1/admin/tenants/{tenant}/policy", json={"audit_level": "admin"}
                )
                answer.raise_for_status()
                for start in range(0, messages, 100):
                    items = [
                        {"conversation_id": f"c{n % 50}", "role": "user",
                         "content": f"note {n} about {TOPICS[n % len(TOPICS)]} and more words"}
                        for n in range(start, min(messages, start + 100))
                    ]
                    batch = await client.post(
                        "/v1/messages/batch", json={"tenant_id": tenant, "messages": items}
                    )
                    batch.raise_for_status()
                    kept[level] = batch.json()["items"][0]["message_id"]
                # The level is set after the fill, so the fill records nothing.
                answer = await client.put(
                    f"/v1/admin/tenants/{tenant}/policy", json={"audit_level": level}
                )
                answer.raise_for_status()

            paths: dict[str, Callable[[str, int], Awaitable[httpx.Response]]] = {
                "search": lambda level, n: client.get(
                    "/v1/memory/search",
                    params={"tenant_id": f"audit-{level}", "query": QUERIES[n % len(QUERIES)]},
                ),
                "write": lambda level, n: client.post(
                    "/v1/messages",
                    json={"tenant_id": f"audit-{level}", "conversation_id": f"w{n % 50}",
                          "role": "user", "content": f"round {n}: a new note about {TOPICS[n % 9]}"},
                ),
                "get": lambda level, n: client.get(
                    f"/v1/messages/{kept[level]}", params={"tenant_id": f"audit-{level}"}
                ),
            }
            samples = {(path, level): Samples() for path in paths for level in LEVELS}
            warmup = 20
            for n in range(warmup + rounds):
                for path, call in paths.items():
                    for level in LEVELS:
                        cpu, db_cpu = time.process_time(), server_cpu_seconds(server.pgdata)
                        started = time.perf_counter()
                        answer = await call(level, n)
                        wall = time.perf_counter() - started
                        cpu, db_cpu = (
                            time.process_time() - cpu, server_cpu_seconds(server.pgdata) - db_cpu
                        )
                        if answer.status_code >= 300:
                            raise RuntimeError(f"{path} at {level}: {answer.status_code} {answer.text}")
                        if n >= warmup:
                            entry = samples[(path, level)]
                            entry.wall.append(wall * 1000)
                            entry.cpu += cpu * 1000
                            entry.db_cpu += db_cpu * 1000
            recorded = await client.get(
                "/v1/admin/audit", params={"tenant_id": "audit-all", "limit": 5}
            )
            recorded.raise_for_status()
            assert recorded.json()["items"], "the `all` tenant recorded nothing"
        # What the log holds per entry, its indexes included.
        connection = await asyncpg.connect(to_libpq_url(server.url("bench")))
        try:
            await connection.execute("VACUUM ANALYZE audit_events")
            entries, size = await connection.fetchrow(
                "SELECT count(*), pg_total_relation_size('audit_events') FROM audit_events"
            )
        finally:
            await connection.close()
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    lines = [
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores "
        f"(shared), Python {platform.python_version()}; {messages:,} messages per tenant, "
        f"{rounds} rounds after {warmup} of warm-up, the three levels interleaved; fake embedder, "
        "in-process ASGI client.",
        "",
        "| path | audit_level | median ms | p95 ms | app CPU ms / request | database CPU ms / request |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for path in paths:
        for level in LEVELS:
            entry = samples[(path, level)]
            lines.append(
                f"| {path} | {level} | {statistics.median(entry.wall):.2f} | "
                f"{percentile(entry.wall, 0.95):.2f} | {entry.cpu / rounds:.2f} | "
                f"{entry.db_cpu / rounds:.2f} |"
            )
    lines += [
        "",
        f"The audit log then held {entries:,} entries in {size / 1024 / 1024:.1f} MiB with its "
        f"indexes: {size / entries:.0f} bytes per entry.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--write", type=Path, help="put the table in this Markdown file")
    arguments = parser.parse_args()
    report = asyncio.run(run(arguments.messages, arguments.rounds))
    print(report)
    if arguments.write is not None:
        write_block(
            arguments.write, "bench-audit", report, title="Benchmarks",
            heading="Audit levels (`scripts/bench_audit.py`)",
        )


if __name__ == "__main__":
    main()
