"""Ingestion through POST /v1/messages/batch versus single POST /v1/messages, side by side in one run.

Starts a private embedded PostgreSQL + pgvector and `memory-layer serve` with the local model
(all-MiniLM-L6-v2, CPU) as a separate process, inline embeddings (the default), reached over real
HTTP on loopback. On the same chat texts (the turns of scripts/data/eval_conversations.json,
cycled), it alternates R rounds of

  single   S sequential POST /v1/messages, one message each (embedding + INSERT + commit each)
  batch    one POST /v1/messages/batch of B messages (one model call, one INSERT, one commit)

and reports messages per second for each (messages / summed request time), request latencies,
and how much of that time the service spent in the model (its memory_embedding_duration_seconds
histogram, read between the blocks). Every message must come back 200 with its vector.

Usage: python scripts/bench_batch.py [--rounds 10] [--singles 30] [--batch 100]
                                     [--write docs/benchmarks.md]
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

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import free_port, wait_ready, write_block  # noqa: E402

from memory_layer.kit.db.embedded import start_embedded  # noqa: E402
from memory_layer.kit.db.engine import to_libpq_url  # noqa: E402

DATASET = ROOT / "scripts" / "data" / "eval_conversations.json"
API_KEY = "bench-batch-key"
TENANTS = [f"batch-{i}" for i in range(10)]


def chat_texts(count: int) -> list[str]:
    data = json.loads(DATASET.read_text())
    turns = [turn["text"] for conv in data["conversations"] for turn in conv["turns"]]
    # Cycled, each copy made unique so no two rows are the same message.
    return [f"{turns[i % len(turns)]} (#{i})" for i in range(count)]


def message(i: int, text: str) -> dict[str, str]:
    return {"conversation_id": f"c{i % 37}", "role": "user" if i % 2 else "assistant",
            "content": text}


def embedding_seconds(metrics_text: str) -> tuple[float, float]:
    """(sum, count) of the service's embedding-call histogram."""
    values = {"_sum": 0.0, "_count": 0.0}
    for line in metrics_text.splitlines():
        for suffix in values:
            if line.startswith(f"memory_embedding_duration_seconds{suffix} "):
                values[suffix] = float(line.split()[-1])
    return values["_sum"], values["_count"]


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1000


class Totals:
    def __init__(self) -> None:
        self.requests: list[float] = []
        self.messages = 0
        self.model_seconds = 0.0
        self.model_calls = 0

    @property
    def rate(self) -> float:
        return self.messages / sum(self.requests)


async def run(args: argparse.Namespace) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="ml-bench-batch-"))
    embedded = start_embedded(workdir)
    embedded.ensure_database()
    url = embedded.url()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
    env.update(MEMORY_DATABASE_URL=url, MEMORY_AUTO_MIGRATE="true", MEMORY_LOG_LEVEL="warning",
               MEMORY_API_KEYS=API_KEY)
    cli = str(Path(sys.executable).parent / "memory-layer")
    server = subprocess.Popen([cli, "serve", "--port", str(port)], env=env, cwd=ROOT)
    per_round = args.singles + args.batch
    texts = chat_texts(args.rounds * per_round + 50)
    single, batch = Totals(), Totals()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=120, headers={"X-API-Key": API_KEY}
        ) as client:
            await wait_ready(client, attempts=400)

            async def model_time() -> tuple[float, float]:
                return embedding_seconds((await client.get("/metrics")).text)

            # Warm-up of both paths (first model calls, prepared statements), not measured.
            for i in range(10):
                response = await client.post(
                    "/v1/messages", json={"tenant_id": "warm-up", **message(i, texts[-i - 1])}
                )
                response.raise_for_status()
            warm = [message(i, texts[-20 - i]) for i in range(20)]
            response = await client.post(
                "/v1/messages/batch", json={"tenant_id": "warm-up", "messages": warm}
            )
            response.raise_for_status()

            cursor = 0
            for r in range(args.rounds):
                tenant = TENANTS[r % len(TENANTS)]
                before = await model_time()
                for _ in range(args.singles):
                    body = {"tenant_id": tenant, **message(cursor, texts[cursor])}
                    started = time.perf_counter()
                    response = await client.post("/v1/messages", json=body)
                    single.requests.append(time.perf_counter() - started)
                    if response.status_code != 200:
                        raise RuntimeError(f"single write answered {response.status_code}")
                    single.messages += 1
                    cursor += 1
                after = await model_time()
                single.model_seconds += after[0] - before[0]
                single.model_calls += int(after[1] - before[1])

                items = [message(cursor + j, texts[cursor + j]) for j in range(args.batch)]
                started = time.perf_counter()
                response = await client.post(
                    "/v1/messages/batch", json={"tenant_id": tenant, "messages": items}
                )
                batch.requests.append(time.perf_counter() - started)
                if response.status_code != 200 or any(
                    item["status"] != 200 for item in response.json()["items"]
                ):
                    raise RuntimeError(f"batch answered {response.status_code}")
                batch.messages += args.batch
                cursor += args.batch
                done = await model_time()
                batch.model_seconds += done[0] - after[0]
                batch.model_calls += int(done[1] - after[1])

        connection = await asyncpg.connect(to_libpq_url(url))
        ready = await connection.fetchval(
            "SELECT count(*) FROM messages WHERE tenant_id LIKE 'batch-%' "
            "AND embedding_status = 'ready' AND embedding IS NOT NULL"
        )
        await connection.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        embedded.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if ready != single.messages + batch.messages:
        raise RuntimeError(f"{ready} ready rows, expected {single.messages + batch.messages}")

    mean_words = statistics.fmean(len(t.split()) for t in texts[:cursor])
    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M UTC} on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}: "
        f"`python scripts/bench_batch.py --rounds {args.rounds} --singles {args.singles} "
        f"--batch {args.batch}`.",
        "",
        f"{cursor} chat turns (mean {mean_words:.0f} words), local model all-MiniLM-L6-v2, inline "
        f"embeddings, one HTTP client. {args.rounds} rounds, each {args.singles} sequential single "
        f"POSTs then one batch of {args.batch}; all {ready} messages stored `ready` with their "
        "vector.",
        "",
        "| path | messages | messages/s | request p50 ms | request p95 ms | ms per message | "
        "model calls | share of time in the model |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, totals in (("single `POST /v1/messages`", single),
                         (f"`POST /v1/messages/batch` of {args.batch}", batch)):
        elapsed = sum(totals.requests)
        lines.append(
            f"| {name} | {totals.messages} | {totals.rate:.1f} | {p(totals.requests, 0.5):.1f} | "
            f"{p(totals.requests, 0.95):.1f} | {1000 * elapsed / totals.messages:.2f} | "
            f"{totals.model_calls} | {totals.model_seconds / elapsed:.0%} |"
        )
    lines += [
        "",
        f"Batch throughput / single throughput = {batch.rate / single.rate:.2f}. Per message, a "
        f"single write spent {1000 * single.model_seconds / single.messages:.2f} ms in the model "
        f"and {1000 * (sum(single.requests) - single.model_seconds) / single.messages:.2f} ms "
        f"elsewhere (HTTP, auth, transaction, INSERT); a batched one "
        f"{1000 * batch.model_seconds / batch.messages:.2f} ms and "
        f"{1000 * (sum(batch.requests) - batch.model_seconds) / batch.messages:.2f} ms.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--singles", type=int, default=30)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--write", type=Path, default=None, help="update this Markdown file")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(report)
    if args.write:
        write_block(args.write, "bench_batch", report, title="Benchmarks",
                    heading="Batch ingestion (`scripts/bench_batch.py`)")


if __name__ == "__main__":
    main()
