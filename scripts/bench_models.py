"""Throughput of the local model on each engine (torch, onnx, onnx-int8), side by side in one run.

Loads the bundled all-MiniLM-L6-v2 once per engine (the ONNX files are exported into --cache-dir
on first use) and embeds the chat turns and questions of scripts/data/eval_conversations.json:
  batched  the texts in calls of --batch texts, as the worker calls the model
  single   one text per call, as an inline write or a search query does
Rounds interleave the engines so each sees the same machine state; the table gives medians over
rounds, and the cosine of each engine's vectors to torch's (minimum and mean over the sentences).

Usage: python scripts/bench_models.py [--rounds 5] [--threads 1] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import write_block  # noqa: E402

from memory_layer.config import LocalBackend  # noqa: E402
from memory_layer.embeddings.providers.local import LocalEmbeddingProvider  # noqa: E402

DATASET = ROOT / "scripts" / "data" / "eval_conversations.json"


def sentences() -> list[str]:
    data = json.loads(DATASET.read_text())
    turns = [str(t["text"]) for c in data["conversations"] for t in c["turns"]]
    return turns + [str(q["question"]) for q in data["questions"]]


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--singles", type=int, default=100, help="texts embedded one per call")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/memory-layer-bench-models"))
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()

    texts = sentences()
    providers: dict[LocalBackend, LocalEmbeddingProvider] = {}
    load_seconds: dict[LocalBackend, float] = {}
    rss_added: dict[LocalBackend, float] = {}
    for backend in (LocalBackend.onnx_int8, LocalBackend.onnx, LocalBackend.torch):
        before, started = rss_mib(), time.perf_counter()
        providers[backend] = LocalEmbeddingProvider.load(
            backend=backend, threads=args.threads, batch_size=args.batch, cache_dir=args.cache_dir
        )
        providers[backend].embed_blocking(texts[:8])  # warm-up
        load_seconds[backend] = time.perf_counter() - started
        rss_added[backend] = rss_mib() - before

    batched: dict[LocalBackend, list[float]] = {b: [] for b in providers}
    single: dict[LocalBackend, list[float]] = {b: [] for b in providers}
    vectors: dict[LocalBackend, np.ndarray] = {}
    for _ in range(args.rounds):
        for backend, provider in providers.items():
            started = time.perf_counter()
            out = [provider.embed_blocking(texts[i : i + args.batch])
                   for i in range(0, len(texts), args.batch)]
            batched[backend].append(len(texts) / (time.perf_counter() - started))
            vectors[backend] = np.asarray([row for chunk in out for row in chunk])
            started = time.perf_counter()
            for text in texts[: args.singles]:
                provider.embed_blocking([text])
            single[backend].append(args.singles / (time.perf_counter() - started))
        print({b.value: round(v[-1], 1) for b, v in batched.items()}, file=sys.stderr)

    reference = vectors[LocalBackend.torch]
    torch_batched = statistics.median(batched[LocalBackend.torch])
    torch_single = statistics.median(single[LocalBackend.torch])
    load = os.getloadavg()
    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}: `python scripts/bench_models.py "
        + " ".join(sys.argv[1:]).replace(f" --write {args.write}", "").strip() + "`.",
        "",
        f"{len(texts)} evaluation sentences (chat turns and questions), {args.threads} intra-op "
        f"thread(s), batches of {args.batch}, {args.singles} single calls per round, medians of "
        f"{args.rounds} interleaved rounds. Load average at the end: {load[0]:.1f} "
        "(other work shared the cores).",
        "",
        "| engine | batched texts/s | x torch | single texts/s | x torch | min cosine to torch "
        "| mean cosine | load s | RSS added MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for backend in (LocalBackend.torch, LocalBackend.onnx, LocalBackend.onnx_int8):
        b, s = statistics.median(batched[backend]), statistics.median(single[backend])
        cosines = (vectors[backend] * reference).sum(axis=1)
        lines.append(
            f"| {backend.value} | {b:.1f} | {b / torch_batched:.2f} | {s:.1f} | {s / torch_single:.2f} "
            f"| {cosines.min():.4f} | {cosines.mean():.4f} | {load_seconds[backend]:.1f} "
            f"| {rss_added[backend]:.0f} |"
        )
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_block(args.write, "bench_models", report, title="Benchmarks",
                    heading="The local model's engines (`scripts/bench_models.py`)")


if __name__ == "__main__":
    main()
