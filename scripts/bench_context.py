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
thread's schedstat, as scripts/bench_api.py reads it). Then the SQL statements each path sends,
over --rounds questions: its service called in this process on the same database, counted by
SQLAlchemy's cursor events.

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

import httpx
from cachetools import TTLCache
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import free_port, percentile, wait_ready, write_block  # noqa: E402

from memory_layer.config import Settings  # noqa: E402
from memory_layer.context import service as context_service  # noqa: E402
from memory_layer.embeddings.providers.fake import FakeEmbeddingProvider  # noqa: E402
from memory_layer.kit.cache import TenantSizes  # noqa: E402
from memory_layer.kit.db.embedded import start_embedded  # noqa: E402
from memory_layer.kit.db.engine import create_engine, create_read_sessionmaker  # noqa: E402
from memory_layer.kit.observability.metrics import Metrics  # noqa: E402
from memory_layer.search import service as search_service  # noqa: E402
from memory_layer.search.plan import SearchFilters  # noqa: E402

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


async def statement_counts(
    url: str, sessions: dict[str, tuple[str, str]], questions: list[dict[str, Any]]
) -> dict[str, float]:
    """SQL statements per call of each path's service, called in this process on the same
    database as the routes call them (a tenant's size already known, as in a serving process
    after its first search), counted by SQLAlchemy's cursor events."""
    settings = Settings(_env_file=None, database_url=url, embedding_provider="fake")
    engine = create_engine(url, pool_size=1, max_overflow=0)
    sessionmaker = create_read_sessionmaker(engine)
    embedder, metrics = FakeEmbeddingProvider(384), Metrics()
    sizes: TenantSizes = TTLCache(maxsize=10, ttl=600)
    executed = 0

    def count(*_: object) -> None:
        nonlocal executed
        executed += 1

    event.listen(engine.sync_engine, "before_cursor_execute", count)

    async def search(session: AsyncSession, question: dict[str, Any]) -> object:
        return await search_service.search_memory(
            session, TENANT, search_service.SearchQuery(
                text=question["question"], top_k=20,
                filters=SearchFilters(user_id=sessions[question["conversation_id"]][1])),
            settings=settings, embedder=embedder, metrics=metrics, tenant_sizes=sizes)

    async def context(session: AsyncSession, question: dict[str, Any], query: bool) -> object:
        return await context_service.build_context(
            session, TENANT, sessions[question["conversation_id"]][0],
            query=question["question"] if query else None, budget_tokens=BUDGET,
            settings=settings, embedder=embedder, metrics=metrics, tenant_sizes=sizes)

    calls: dict[str, Callable[[AsyncSession, dict[str, Any]], Awaitable[object]]] = {
        "search": search,
        "context": lambda session, question: context(session, question, True),
        "context_default": lambda session, question: context(session, question, False),
    }
    counts: dict[str, float] = {}
    try:
        async with sessionmaker() as session:
            await search(session, questions[0])  # the tenant's size, as a serving process keeps it
        for name, call in calls.items():
            executed = 0
            for question in questions:
                async with sessionmaker() as session:
                    await call(session, question)
            counts[name] = executed / len(questions)
    finally:
        await engine.dispose()
    return counts


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

            per_request = await statement_counts(url, sessions, questions[: args.rounds])
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
        "| path | p50 ms | p95 ms | serve's event loop CPU, mean ms | SQL statements a call |",
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
