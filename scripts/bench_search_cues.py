"""Search latency of two services side by side in one run (by default: without and with the query
cues and answer expansion; `--labels` names other pairs, such as a release before and after).

Two services on the same database (one started with MEMORY_SEARCH_TIME_BOOST=0
MEMORY_SEARCH_SPEAKER_BOOST=0 MEMORY_SEARCH_ANSWER_EXPANSION=false, one with the defaults) get
every question of an evaluation set loaded by scripts/eval_retrieval.py (same tenant), interleaved,
the order alternating per question. Each service sees each query once, so its query vector is not
cached: the time includes embedding the query with the local model.

Usage:
  python scripts/bench_search_cues.py --plain-url http://127.0.0.1:8319 --cued-url http://127.0.0.1:8318
      --tenant TENANT [--dataset scripts/data/longmem_conversations.json | memorybank]
      [--labels BEFORE AFTER] [--block NAME] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from benchkit import write_block  # noqa: E402
from eval_retrieval import load_dataset  # noqa: E402

DEFAULT_DATASET = ROOT / "scripts" / "data" / "longmem_conversations.json"


async def timed(client: httpx.AsyncClient, tenant: str, question: dict[str, str], mode: str) -> float:
    started = time.perf_counter()
    response = await client.post(
        "/v1/memory/search",
        json={"tenant_id": tenant, "query": question["question"], "mode": mode, "top_k": 20,
              "conversation_id": question["conversation_id"]},
    )
    response.raise_for_status()
    return (time.perf_counter() - started) * 1000


def summary(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), statistics.quantiles(values, n=20)[18]


async def run(args: argparse.Namespace) -> str:
    questions = load_dataset(args.dataset)["questions"]
    before, after = args.labels
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    lines = [
        f"Run {now} UTC on {platform.machine()}, {len(questions)} questions of `{args.dataset.name}`, "
        f"top_k 20, in `hybrid` each query embedded once per service (machine shared, load varies); "
        f"`keyword` embeds nothing, so it shows the database's share: "
        f"`python scripts/bench_search_cues.py {' '.join(sys.argv[1:])}`.",
        "",
        "| mode | service | p50 ms | p95 ms | p50 ratio |",
        "|---|---|---:|---:|---:|",
    ]
    async with httpx.AsyncClient(base_url=args.plain_url, timeout=60) as plain, \
            httpx.AsyncClient(base_url=args.cued_url, timeout=60) as cued:
        clients = {"plain": plain, "cued": cued}
        for mode in ("hybrid", "keyword"):
            times: dict[str, list[float]] = {"plain": [], "cued": []}
            for number, question in enumerate(questions):
                order = ("plain", "cued") if number % 2 == 0 else ("cued", "plain")
                for name in order:
                    times[name].append(await timed(clients[name], args.tenant, question, mode))
            (p50_plain, p95_plain), (p50_cued, p95_cued) = summary(times["plain"]), summary(times["cued"])
            lines += [
                f"| {mode} | {before} | {p50_plain:.1f} | {p95_plain:.1f} | 1.00 |",
                f"| {mode} | {after} | {p50_cued:.1f} | {p95_cued:.1f} "
                f"| {p50_cued / p50_plain:.2f} |",
            ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain-url", required=True)
    parser.add_argument("--cued-url", required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--labels", nargs=2, metavar=("BEFORE", "AFTER"),
                        default=["cues and answer expansion off", "defaults (cues, answer expansion)"],
                        help="what the two services are, for the table")
    parser.add_argument("--block", default="bench_search_cues", help="the marked block to replace")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    text = asyncio.run(run(args))
    print(text)
    if args.write:
        write_block(args.write, args.block, text, title="Benchmarks",
                    heading="Search with query cues (`scripts/bench_search_cues.py`)")


if __name__ == "__main__":
    main()
