"""Throughput of the consolidation worker: turns consolidated per second, extraction on and off.

Stores `--conversations` conversations of `--turns` turns each (user and assistant turns
alternating, the user turns drawn from the labelled set's statements, so about half of them hold
a fact) through POST /v1/messages/batch of an in-process app, once per configuration, each in a
tenant of its own whose policy sets `extract_facts` and `summarize`; then times
ConsolidationWorker.drain() over the tenant. Embeddings are made inline at write time, so the
timing is consolidation's own work: claiming, extraction, reconciliation (with the embedding of
each new fact), summaries and the writes.

Usage:
  python scripts/bench_consolidation.py [--conversations 50] [--turns 40]
      [--embedding-provider fake|local] [--provider extractive|openai_compatible]
      [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchkit import write_block  # noqa: E402
from eval_consolidation import ANSWERS, DATASET, app_client, make_provider  # noqa: E402
from tests.support.language_standin import LanguageStandIn, Recorded  # noqa: E402

from memory_layer.config import Settings  # noqa: E402
from memory_layer.consolidation.service import Distillers  # noqa: E402
from memory_layer.consolidation.worker import ConsolidationWorker  # noqa: E402

CONFIGURATIONS = (
    ("both off", False, False),
    ("summaries only", False, True),
    ("extraction only", True, False),
    ("extraction and summaries", True, True),
)


def turns_of(dataset: dict[str, Any], rng: random.Random, count: int) -> list[tuple[str, str]]:
    said = [t[1] for u in dataset["users"] for c in u["conversations"] for t in c if t[0] == "user"]
    replies = [t[1] for u in dataset["users"] for c in u["conversations"] for t in c
               if t[0] == "assistant"]
    return [("user", rng.choice(said)) if i % 2 == 0 else ("assistant", rng.choice(replies))
            for i in range(count)]


async def run(args: argparse.Namespace) -> str:
    dataset = json.loads(DATASET.read_text())
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-consolidation-") as data_dir:
        Path(data_dir).chmod(0o777)
        settings = Settings(
            data_dir=Path(data_dir), embedding_provider=args.embedding_provider,
            worker_enabled=False, global_rate_limit="off", tenant_rate_limit="off",
            max_batch_messages=1000,
        )
        with LanguageStandIn(Recorded(ANSWERS)) as standin:
            async with app_client(settings) as client:
                state = client.app.state  # type: ignore[attr-defined]
                for label, extract, summarize in CONFIGURATIONS:
                    rng = random.Random(7)
                    tenant = f"bench-{uuid.uuid4().hex[:10]}"
                    put = await client.put(f"/v1/admin/tenants/{tenant}/policy",
                                           json={"extract_facts": extract, "summarize": summarize})
                    put.raise_for_status()
                    for c in range(args.conversations):
                        user = f"user-{c % max(1, args.conversations // 2)}"
                        items = [
                            {"conversation_id": f"c{c}", "role": role, "content": content,
                             **({"user_id": user} if role == "user" else {})}
                            for role, content in turns_of(dataset, rng, args.turns)
                        ]
                        response = await client.post("/v1/messages/batch",
                                                     json={"tenant_id": tenant, "messages": items})
                        response.raise_for_status()
                    provider = make_provider(args.provider, standin)
                    worker = ConsolidationWorker(
                        state.sessionmaker,
                        Distillers(provider, state.embedder, state.settings, state.metrics),
                    )
                    started = time.perf_counter()
                    done = await worker.drain(tenant)
                    elapsed = time.perf_counter() - started
                    await provider.close()
                    rows.append(f"| {label} | {done} | {elapsed:.1f} | {done / elapsed:.0f} |")
                    print(rows[-1], file=sys.stderr)
    total = args.conversations * args.turns
    return "\n".join([
        f"{args.conversations} conversations x {args.turns} turns = {total} turns (half of them "
        f"user turns from the labelled set), provider `{args.provider}`, embeddings "
        f"`{args.embedding_provider}`, summaries every 20 turns, batches of 32; one worker. "
        f"`python scripts/bench_consolidation.py --conversations {args.conversations} "
        f"--turns {args.turns} --provider {args.provider} --embedding-provider "
        f"{args.embedding_provider}`.",
        "",
        "| Tenant policy | Turns | Seconds | Turns per second |",
        "|---|---|---|---|",
        *rows,
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--embedding-provider", choices=["local", "fake"], default="fake")
    parser.add_argument("--provider", choices=["extractive", "openai_compatible"],
                        default="extractive")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    text = asyncio.run(run(args))
    print(text)
    if args.write:
        write_block(args.write, f"consolidation-throughput-{args.provider}-{args.embedding_provider}",
                    text, title="Benchmarks",
                    heading="Consolidation: the worker's throughput (`scripts/bench_consolidation.py`)")


if __name__ == "__main__":
    main()
