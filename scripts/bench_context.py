"""The prompt context (POST /v1/context) beside a plain search, on the same data, in one run.

Starts a private embedded PostgreSQL + pgvector and `memory-layer serve` on it (fake embedding
provider: every path embeds its query the same way, so the comparison is of what the service does
around the model), stores the evaluation conversations (scripts/data/eval_conversations.json:
each session its own conversation, user turns under the speaker's user_id, every fifth user
turn also as a `fact` of that user, a state document per conversation), then, for each of the
evaluation questions, interleaved:

  search          POST /v1/memory/search {query, user_id, top_k: 20}: one of the two searches
                  the context makes
  context         POST /v1/context {conversation_id, query, budget_tokens: 2000}
  context_default the same without `query`: the conversation's newest user turn is searched

reporting p50 / p95 of each, and the CPU time of serve's event loop per request (its main
thread's schedstat, as scripts/bench_api.py reads it). Then each path alone for --rounds
requests, counting the SQL statements it sends: the read routes run without a transaction, so
each statement is one commit in pg_stat_database.

Usage: python scripts/bench_context.py [--questions 100] [--write docs/benchmarks.md]
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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import free_port, percentile, wait_ready, write_block  # noqa: E402

from memory_layer.kit.db.embedded import start_embedded  # noqa: E402
from memory_layer.kit.db.engine import to_libpq_url  # noqa: E402

API_KEY = "bench-context-key"
TENANT = "bench-context"
BUDGET = 2000


def loop_cpu_seconds(pid: int) -> float:
    """CPU time of the process's main thread (serve's event loop), from its schedstat (ns)."""
    return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[0]) / 1e9


def conversation_of(conversation_id: str, session: int) -> str:
    return f"{conversation_id}-s{session}"


def seed_batches(data: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The evaluation conversations as batches of POST /v1/messages/batch items."""
    batches: list[list[dict[str, Any]]] = []
    for conversation in data["conversations"]:
        items: list[dict[str, Any]] = []
        for index, turn in enumerate(conversation["turns"]):
            user = turn["speaker"] if turn["role"] == "user" else None
            item = {"conversation_id": conversation_of(conversation["conversation_id"],
                                                       turn["session"]),
                    "role": turn["role"], "content": turn["text"], "created_at": turn["date"],
                    "user_id": user}
            items.append(item)
            if user is not None and index % 5 == 0:
                items.append({**item, "conversation_id": f"{conversation['conversation_id']}-profile",
                              "kind": "fact"})
        batches.append(items)
    return batches


def last_sessions(data: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Each conversation's last session (its id in the service) and its user."""
    found = {}
    for conversation in data["conversations"]:
        last = max(turn["session"] for turn in conversation["turns"])
        user = next(turn["speaker"] for turn in conversation["turns"] if turn["role"] == "user")
        found[conversation["conversation_id"]] = (
            conversation_of(conversation["conversation_id"], last), user
        )
    return found


def summary(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples) * 1000, percentile(samples, 0.95) * 1000


async def statements(connection: asyncpg.Connection, database: str) -> int:
    # Statistics reach pg_stat_database when a backend is idle for a second or at its exit.
    await asyncio.sleep(1.5)
    await connection.execute("SELECT pg_stat_clear_snapshot()")
    value = await connection.fetchval(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = $1", database
    )
    return int(value)


async def run(args: argparse.Namespace) -> str:
    data = json.loads((ROOT / "scripts" / "data" / "eval_conversations.json").read_text())
    workdir = Path(tempfile.mkdtemp(prefix="ml-bench-context-"))
    embedded = start_embedded(workdir)
    embedded.ensure_database()
    url = embedded.url()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
    env.update(MEMORY_DATABASE_URL=url, MEMORY_AUTO_MIGRATE="true", MEMORY_LOG_LEVEL="warning",
               MEMORY_API_KEYS=API_KEY, MEMORY_GLOBAL_RATE_LIMIT="off",
               MEMORY_EMBEDDING_PROVIDER="fake", MEMORY_EMBEDDING_DIMENSIONS="384")
    cli = str(Path(sys.executable).parent / "memory-layer")
    server = subprocess.Popen([cli, "serve", "--port", str(port)], env=env, cwd=ROOT)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                     headers={"X-API-Key": API_KEY}) as client:
            await wait_ready(client, attempts=300)
            stored = 0
            for batch in seed_batches(data):
                for start in range(0, len(batch), 200):
                    response = await client.post("/v1/messages/batch", json={
                        "tenant_id": TENANT, "messages": batch[start:start + 200]})
                    response.raise_for_status()
                    stored += len(batch[start:start + 200])
            sessions = last_sessions(data)
            for conversation_id, user in sessions.values():
                response = await client.put(
                    f"/v1/conversations/{conversation_id}/state", params={"tenant_id": TENANT},
                    json={"state": {"user": user, "task": "answer questions about the past",
                                    "open_items": ["move", "flat", "manager"]}})
                response.raise_for_status()
            questions = data["questions"][: args.questions]

            def search(question: dict[str, Any]) -> Awaitable[httpx.Response]:
                _, user = sessions[question["conversation_id"]]
                return client.post("/v1/memory/search", json={
                    "tenant_id": TENANT, "query": question["question"], "user_id": user,
                    "top_k": 20})

            def context(question: dict[str, Any]) -> Awaitable[httpx.Response]:
                conversation_id, _ = sessions[question["conversation_id"]]
                return client.post("/v1/context", json={
                    "tenant_id": TENANT, "conversation_id": conversation_id,
                    "query": question["question"], "budget_tokens": BUDGET})

            def context_default(question: dict[str, Any]) -> Awaitable[httpx.Response]:
                conversation_id, _ = sessions[question["conversation_id"]]
                return client.post("/v1/context", json={
                    "tenant_id": TENANT, "conversation_id": conversation_id,
                    "budget_tokens": BUDGET})

            paths: dict[str, Callable[[dict[str, Any]], Awaitable[httpx.Response]]] = {
                "search": search, "context": context, "context_default": context_default}
            wall: dict[str, list[float]] = {name: [] for name in paths}
            cpu: dict[str, list[float]] = {name: [] for name in paths}
            used: list[int] = []
            for question in questions:
                for name, call in paths.items():
                    before, started = loop_cpu_seconds(server.pid), time.perf_counter()
                    response = await call(question)
                    wall[name].append(time.perf_counter() - started)
                    cpu[name].append(loop_cpu_seconds(server.pid) - before)
                    response.raise_for_status()
                    if name == "context":
                        used.append(response.json()["usage"]["total_tokens"])

            connection = await asyncpg.connect(to_libpq_url(url))
            per_request: dict[str, float] = {}
            for name, call in paths.items():
                before = await statements(connection, "memory_layer")
                for question in questions[: args.rounds]:
                    (await call(question)).raise_for_status()
                per_request[name] = (await statements(connection, "memory_layer") - before) / min(
                    args.rounds, len(questions))
            await connection.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        embedded.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M UTC} on {platform.machine()}, {os.cpu_count()} "
        f"cores, Python {platform.python_version()}, on a machine shared with other work "
        f"(figures are for comparing the rows, not absolute): `python scripts/bench_context.py "
        f"--questions {args.questions} --rounds {args.rounds}`.",
        "",
        f"{stored} messages (the evaluation conversations, {len(sessions)} users, a state per "
        f"conversation), fake embedding provider, no Redis (no search cache). "
        f"{len(questions)} questions, the three paths interleaved per question; budget "
        f"{BUDGET} tokens (the contexts used {statistics.median(used):.0f} tokens at the median).",
        "",
        "| path | p50 ms | p95 ms | serve's event loop CPU, mean ms | SQL statements a request |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in paths:
        p50, p95 = summary(wall[name])
        lines.append(f"| {name} | {p50:.2f} | {p95:.2f} | "
                     f"{1000 * statistics.fmean(cpu[name]):.2f} | {per_request[name]:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20, help="requests per statement count")
    parser.add_argument("--write", type=Path, default=None, help="update this Markdown file")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(report)
    if args.write:
        write_block(args.write, "bench_context", report, title="Benchmarks",
                    heading="Prompt context beside search (`scripts/bench_context.py`)")


if __name__ == "__main__":
    main()
