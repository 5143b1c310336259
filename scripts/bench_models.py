"""Throughput of the local model on each engine (torch, onnx, onnx-int8, torch-bf16), side by side.

Loads the bundled all-MiniLM-L6-v2 once per engine (the ONNX files are exported into --cache-dir
on first use) and embeds the chat turns and questions of scripts/data/eval_conversations.json:
  batched  the texts in calls of --batch texts, as the worker calls the provider (which sorts
           them by length and runs the model on --model-batch at a time,
           MEMORY_EMBEDDING_BATCH_SIZE)
  single   one text per call, as an inline write or a search query does
Rounds interleave the engines so each sees the same machine state; the table gives medians over
rounds, and the cosine of each engine's vectors to torch's (minimum and mean over the sentences).

With --quantization, it also tries other int8 variants of the exported graph (not shipped: the
table says why) on the same sentences: dynamic int8 of every MatMul, of every MatMul but the
feed-forward output, and onnxruntime's weight-only MatMulNBits at 8 bits (blocks of 32 and 128,
int8 compute), each against torch's vectors.

Usage: python scripts/bench_models.py [--rounds 5] [--threads 1] [--model-batch 16] [--quantization]
           [--write docs/benchmarks.md]
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

from memory_layer.config import LocalBackend, Settings  # noqa: E402
from memory_layer.embeddings.providers.local import (  # noqa: E402
    LocalEmbeddingProvider,
    native_bf16,
)

DATASET = ROOT / "scripts" / "data" / "eval_conversations.json"
# Load order: the ONNX engines first, so their "RSS added" does not include torch; torch-bf16
# after torch shares its import (its RSS added is the second model alone).
MODEL_BATCH = int(Settings.model_fields["embedding_batch_size"].default)
ENGINES_LOADED = (LocalBackend.onnx_int8, LocalBackend.onnx, LocalBackend.torch,
                  LocalBackend.torch_bf16)


def sentences() -> list[str]:
    data = json.loads(DATASET.read_text())
    turns = [str(t["text"]) for c in data["conversations"] for t in c["turns"]]
    return turns + [str(q["question"]) for q in data["questions"]]


def cpu_name() -> str:
    """The CPU's model name and family/model numbers (hosts of one name differ in generation)."""
    fields: dict[str, str] = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    bf16 = "native bfloat16" if native_bf16() else "no native bfloat16"
    return (f"{fields.get('model name', platform.processor())}, family {fields.get('cpu family')} "
            f"model {fields.get('model')}, {bf16}")


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def quantization_variants(cache_dir: Path, texts: list[str], reference: np.ndarray, threads: int,
                          batch: int, model_batch: int) -> list[str]:
    """Rows for the variants that were tried and not shipped, measured like the engines."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from memory_layer.embeddings.providers.local import OnnxEncoder, bundled_model_path

    fp32 = next(cache_dir.glob("*/model.onnx"))
    names = [n.name for n in onnx.load(str(fp32), load_external_data=False).graph.node
             if n.op_type == "MatMul"]
    ffn_out = [n for n in names if n.endswith("/output/dense/MatMul") and "/attention/" not in n]
    built: dict[str, Path] = {}
    for label, exclude in (("dynamic int8, every MatMul", []),
                           ("dynamic int8, all but the feed-forward output", ffn_out)):
        target = cache_dir / f"variant-{len(built)}.onnx"
        quantize_dynamic(str(fp32), str(target), op_types_to_quantize=["MatMul"], per_channel=True,
                         weight_type=QuantType.QInt8, nodes_to_exclude=exclude)
        built[label] = target
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ImportError:  # needs the onnx_ir package
        MatMulNBitsQuantizer = None  # noqa: N806
    if MatMulNBitsQuantizer is not None:
        for block in (32, 128):
            quantizer = MatMulNBitsQuantizer(onnx.load(str(fp32)), bits=8, block_size=block,
                                             accuracy_level=4)
            quantizer.process()
            target = cache_dir / f"variant-nbits-{block}.onnx"
            onnx.save(quantizer.model.model, str(target))
            built[f"weight-only 8 bit, blocks of {block} (MatMulNBits)"] = target
    rows = []
    for label, path in built.items():
        encoder = OnnxEncoder(bundled_model_path(), path, threads)
        vectors = encoder.encode(texts, model_batch)
        started = time.perf_counter()
        for i in range(0, len(texts), batch):
            encoder.encode(texts[i : i + batch], model_batch)
        rate = len(texts) / (time.perf_counter() - started)
        cosines = (vectors * reference).sum(axis=1)
        rows.append(f"| {label} | {rate:.1f} | {cosines.min():.4f} | {cosines.mean():.4f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64, help="texts per call, as a worker batch")
    parser.add_argument("--model-batch", type=int, default=MODEL_BATCH,
                        help="texts per model call within one (MEMORY_EMBEDDING_BATCH_SIZE)")
    parser.add_argument("--singles", type=int, default=100, help="texts embedded one per call")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/memory-layer-bench-models"))
    parser.add_argument("--quantization", action="store_true",
                        help="also measure the int8 variants that were not shipped")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()

    texts = sentences()
    providers: dict[LocalBackend, LocalEmbeddingProvider] = {}
    load_seconds: dict[LocalBackend, float] = {}
    rss_added: dict[LocalBackend, float] = {}
    for backend in ENGINES_LOADED:
        before, started = rss_mib(), time.perf_counter()
        providers[backend] = LocalEmbeddingProvider.load(
            backend=backend, threads=args.threads, batch_size=args.model_batch, cache_dir=args.cache_dir
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
        f"thread(s), batches of {args.batch} (sorted by length, model calls of {args.model_batch}), "
        f"{args.singles} single calls per round, medians of "
        f"{args.rounds} interleaved rounds. Load average at the end: {load[0]:.1f} "
        f"(other work shared the cores). CPU: {cpu_name()}.",
        "",
        "| engine | batched texts/s | x torch | single texts/s | x torch | min cosine to torch "
        "| mean cosine | load s | RSS added MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for backend in LocalBackend:
        b, s = statistics.median(batched[backend]), statistics.median(single[backend])
        cosines = (vectors[backend] * reference).sum(axis=1)
        lines.append(
            f"| {backend.value} | {b:.1f} | {b / torch_batched:.2f} | {s:.1f} | {s / torch_single:.2f} "
            f"| {cosines.min():.4f} | {cosines.mean():.4f} | {load_seconds[backend]:.1f} "
            f"| {rss_added[backend]:.0f} |"
        )
    if args.quantization:
        lines += [
            "",
            "Variants tried and not shipped (batched, one round, same sentences):",
            "",
            "| variant | batched texts/s | min cosine to torch | mean cosine |",
            "|---|---:|---:|---:|",
            *quantization_variants(args.cache_dir, texts, reference, args.threads, args.batch,
                                   args.model_batch),
        ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_block(args.write, "bench_models", report, title="Benchmarks",
                    heading="The local model's engines (`scripts/bench_models.py`)")


if __name__ == "__main__":
    main()
