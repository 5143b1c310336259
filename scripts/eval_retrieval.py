"""Retrieval quality through the HTTP API: Recall@k per search mode on a conversation dataset.

Loads every turn of the dataset (docs/evaluation.md describes the format) into a fresh tenant with
POST /v1/messages, waits until every message is embedded, then asks each question with
POST /v1/memory/search in each mode, restricted to the question's conversation, and reports
Recall@k: the share of the question's evidence turns found in the top k, averaged over questions.
A `429` (rate limit) or `503` is waited out as its Retry-After says and the request sent again
(memory_layer/kit/client.py), so a tenant limit slows a run down instead of failing it.

Usage:
  python scripts/eval_retrieval.py --base-url http://127.0.0.1:8000 [--api-key KEY]
      [--dataset scripts/data/eval_conversations.json] [--write docs/evaluation.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from memory_layer.kit.client import send

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from benchkit import write_block  # noqa: E402
from memorybank import DEFAULT_SOURCE, load_memorybank  # noqa: E402

DEFAULT_DATASET = ROOT / "scripts" / "data" / "eval_conversations.json"
MODES = ("hybrid", "vector", "keyword")
KS = (1, 5, 10, 20)


@dataclass
class Report:
    """Recall@k per mode, overall and per question kind."""

    questions: int
    turns: int
    recall: dict[str, dict[int, float]]
    by_kind: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)
    # Per split of the dataset (a question's "split", e.g. dev / heldout), when it has splits.
    by_split: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    # Milliseconds per search of the first mode asked (its query vector is not cached yet).
    latencies_ms: list[float] = field(default_factory=list)


def load_dataset(path: Path, conversations: list[str] | None = None,
                 max_turns: int | None = None, memorybank: Path = DEFAULT_SOURCE) -> dict[str, Any]:
    """The dataset, optionally cut to some conversations and their first `max_turns` turns.

    `path` is a JSON dataset, or `memorybank`: MemoryBank's chats read from `memorybank` with the
    project's evidence labels (scripts/memorybank.py). Questions whose evidence falls outside the
    cut are dropped, so every question stays answerable.
    """
    data: dict[str, Any] = (
        load_memorybank(memorybank) if str(path) == "memorybank" else json.loads(path.read_text())
    )
    keep = [
        c for c in data["conversations"]
        if conversations is None or c["conversation_id"] in conversations
    ]
    if max_turns is not None:
        keep = [{**c, "turns": c["turns"][:max_turns]} for c in keep]
    turn_ids = {t["turn_id"] for c in keep for t in c["turns"]}
    questions = [q for q in data["questions"] if set(q["evidence"]) <= turn_ids]
    return {**data, "conversations": keep, "questions": questions}


async def ingest(client: httpx.AsyncClient, data: dict[str, Any], tenant: str,
                 concurrency: int = 8, *, wait_for_context: bool = False) -> int:
    """POST every turn; wait until each queued one is embedded (and, with `wait_for_context`,
    until the worker has given each its context vector). Returns the number stored."""
    turns = [(c["conversation_id"], t) for c in data["conversations"] for t in c["turns"]]
    pending: list[str] = []
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    for item in turns:
        queue.put_nowait(item)

    async def post_all() -> None:
        while not queue.empty():
            conversation_id, turn = queue.get_nowait()
            # A 429 (rate limit) or 503 is waited out as Retry-After says, then sent again;
            # client_message_id makes the second send answer the first message.
            response = await send(
                client,
                "POST",
                "/v1/messages",
                json={
                    "tenant_id": tenant,
                    "conversation_id": conversation_id,
                    "role": turn["role"],
                    "content": turn["text"],
                    "user_id": turn["speaker"] if turn["role"] == "user" else None,
                    "created_at": turn["date"],
                    "client_message_id": turn["turn_id"],
                    "metadata": {"turn_id": turn["turn_id"], "session": turn["session"]},
                },
            )
            response.raise_for_status()
            if response.status_code == 202:
                pending.append(response.json()["status_url"])

    await asyncio.gather(*(post_all() for _ in range(concurrency)))
    for url in pending:
        for _ in range(1200):
            status = (await send(client, "GET", url, params={"tenant_id": tenant})).json()
            if status["embedding_status"] == "ready":
                break
            if status["embedding_status"] == "failed":
                raise RuntimeError(f"{url} failed to embed: {status['embedding_error']}")
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"{url} still pending after 120 s")
    if wait_for_context:
        await wait_for_context_vectors(client, tenant)
    return len(turns)


async def wait_for_context_vectors(client: httpx.AsyncClient, tenant: str,
                                   stall_seconds: float = 120.0) -> None:
    """Wait until the worker has given every turn its context vector (MEMORY_CONTEXT_VECTORS),
    as the admin queue route counts them; returns at once when the service does not count them
    (context vectors off) or the key may not read the queue. Fails when the count stops falling
    for `stall_seconds` (no worker runs)."""
    loop = asyncio.get_running_loop()
    last: int | None = None
    since = loop.time()
    while True:
        response = await send(client, "GET", "/v1/admin/embeddings", params={"tenant_id": tenant})
        pending = response.json().get("context_pending") if response.status_code == 200 else None
        if not pending:
            return
        if last is None or pending < last:
            last, since = pending, loop.time()
        elif loop.time() - since > stall_seconds:
            raise RuntimeError(
                f"{pending} turns of {tenant} still wait for a context vector after "
                f"{stall_seconds:.0f} s without progress: is a worker running?"
            )
        # Slower than MEMORY_CONTEXT_VECTORS_IDLE_MS (1 s): the serving worker fills while the
        # process is quiet.
        await asyncio.sleep(2.5)


async def evaluate(client: httpx.AsyncClient, data: dict[str, Any], tenant: str,
                   modes: tuple[str, ...] = MODES, ks: tuple[int, ...] = KS,
                   ranks: dict[str, dict[str, list[str]]] | None = None) -> Report:
    """Ask every question in every mode; Recall@k averaged over questions (`ranks`, when given,
    receives each question's ranked turn ids per mode)."""
    top_k = max(ks)
    per_mode: dict[str, dict[int, list[float]]] = {m: defaultdict(list) for m in modes}
    per_kind: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(
        lambda: {m: defaultdict(list) for m in modes}
    )
    per_split: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(
        lambda: {m: defaultdict(list) for m in modes}
    )
    latencies: list[float] = []
    for question in data["questions"]:
        evidence = set(question["evidence"])
        for position, mode in enumerate(modes):
            started = time.perf_counter()
            response = await send(
                client,
                "POST",
                "/v1/memory/search",
                json={"tenant_id": tenant, "query": question["question"], "mode": mode,
                      "top_k": top_k, "conversation_id": question["conversation_id"]},
            )
            response.raise_for_status()
            if position == 0:
                latencies.append((time.perf_counter() - started) * 1000)
            ranked = [item["metadata"].get("turn_id") for item in response.json()["items"]]
            if ranks is not None:
                ranks.setdefault(question["question_id"], {})[mode] = ranked
            for k in ks:
                recall = len(evidence & set(ranked[:k])) / len(evidence)
                per_mode[mode][k].append(recall)
                per_kind[question["kind"]][mode][k].append(recall)
                if "split" in question:
                    per_split[question["split"]][mode][k].append(recall)

    def mean(values: dict[int, list[float]]) -> dict[int, float]:
        return {k: statistics.fmean(values[k]) if values[k] else 0.0 for k in ks}

    kinds: dict[str, int] = defaultdict(int)
    splits: dict[str, int] = defaultdict(int)
    for question in data["questions"]:
        kinds[question["kind"]] += 1
        if "split" in question:
            splits[question["split"]] += 1
    return Report(
        questions=len(data["questions"]),
        turns=sum(len(c["turns"]) for c in data["conversations"]),
        recall={mode: mean(per_mode[mode]) for mode in modes},
        by_kind={kind: {m: mean(v) for m, v in by_mode.items()} for kind, by_mode in per_kind.items()},
        kinds=dict(kinds),
        by_split={split: {m: mean(v) for m, v in by_mode.items()} for split, by_mode in per_split.items()},
        splits=dict(splits),
        latencies_ms=latencies,
    )


def render(report: Report, command: str, detail: bool = False) -> str:
    ks = sorted(next(iter(report.recall.values())))
    lines = [
        f"`{command}`: {report.turns} turns, {report.questions} questions.",
        "",
        "| mode | " + " | ".join(f"Recall@{k}" for k in ks) + " |",
        "|---|" + "---:|" * len(ks),
    ]
    for mode, values in report.recall.items():
        lines.append(f"| {mode} | " + " | ".join(f"{values[k]:.3f}" for k in ks) + " |")
    lines += ["", "Recall@10 by question kind:", "",
              "| kind | questions | " + " | ".join(report.recall) + " |",
              "|---|---:|" + "---:|" * len(report.recall)]
    for kind, by_mode in sorted(report.by_kind.items()):
        lines.append(f"| {kind} | {report.kinds[kind]} | "
                     + " | ".join(f"{by_mode[m][10]:.3f}" for m in report.recall) + " |")
    if report.by_split:
        lines += ["", "By split:", "",
                  "| split | questions | mode | " + " | ".join(f"Recall@{k}" for k in ks) + " |",
                  "|---|---:|---|" + "---:|" * len(ks)]
        for split, by_mode in sorted(report.by_split.items()):
            for mode, values in by_mode.items():
                lines.append(f"| {split} | {report.splits[split]} | {mode} | "
                             + " | ".join(f"{values[k]:.3f}" for k in ks) + " |")
    if detail:
        lines += ["", "Recall@k by question kind and mode:", "",
                  "| kind | mode | " + " | ".join(f"@{k}" for k in ks) + " |",
                  "|---|---|" + "---:|" * len(ks)]
        for kind, by_mode in sorted(report.by_kind.items()):
            for mode, values in by_mode.items():
                lines.append(f"| {kind} | {mode} | " + " | ".join(f"{values[k]:.3f}" for k in ks) + " |")
    if report.latencies_ms:
        cuts = statistics.quantiles(report.latencies_ms, n=20) if len(report.latencies_ms) > 1 else []
        p50 = statistics.median(report.latencies_ms)
        p95 = cuts[18] if cuts else p50
        lines += ["", f"Search latency through the API (first mode per question, query vector not "
                      f"cached): p50 {p50:.1f} ms, p95 {p95:.1f} ms."]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> Report:
    data = load_dataset(args.dataset, args.conversations, args.max_turns, args.memorybank)
    headers = {"X-API-Key": args.api_key} if args.api_key else None
    tenant = args.tenant or f"eval-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=args.base_url, headers=headers, timeout=120) as client:
        if not args.skip_ingest:
            await ingest(client, data, tenant, wait_for_context=True)
        ranks: dict[str, dict[str, list[str]]] = {}
        report = await evaluate(client, data, tenant, tuple(args.modes), ranks=ranks)
    if args.ranks:
        args.ranks.write_text(json.dumps(ranks, indent=1) + "\n")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", help="a key that may write and search the tenant")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET,
                        help="a JSON dataset, or `memorybank` (MemoryBank's chats, labelled here)")
    parser.add_argument("--memorybank", type=Path, default=DEFAULT_SOURCE,
                        help="where MemoryBank's files are (default ../shared/data/memorybank-en)")
    parser.add_argument("--ranks", type=Path, help="write each question's ranked turn ids here")
    parser.add_argument("--tenant", help="default: a new tenant per run")
    parser.add_argument("--conversations", nargs="*", help="only these conversation ids")
    parser.add_argument("--max-turns", type=int, help="only the first N turns of each")
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=MODES)
    parser.add_argument("--skip-ingest", action="store_true",
                        help="search a --tenant loaded by an earlier run (query-side changes only)")
    parser.add_argument("--detail", action="store_true", help="Recall@k per kind and mode")
    parser.add_argument("--write", type=Path, help="update this Markdown file")
    parser.add_argument("--block", default="eval_retrieval", help="the marked block to replace")
    args = parser.parse_args()
    if args.skip_ingest and not args.tenant:
        parser.error("--skip-ingest needs --tenant")
    report = asyncio.run(run(args))
    text = render(report, "python scripts/eval_retrieval.py " + " ".join(sys.argv[1:]), args.detail)
    print(text)
    if args.write:
        write_block(args.write, args.block, text, title="Retrieval evaluation", heading="Results")


if __name__ == "__main__":
    main()
