"""Load test of any running deployment: writes and searches of one tenant, at a fixed concurrency.

    python scripts/load_test.py [--base-url http://127.0.0.1:8000] [--api-key KEY] [--tenant-id T]
        [--requests 2000] [--concurrency 16] [--mix 1:4] [--max-retries 5]
        [--write docs/benchmarks.md --label NAME]

With no options it loads `make run` on http://127.0.0.1:8000, in a tenant of its own
(`load-<random>`, so it never mixes with real data). `--mix write:search` is the ratio of
`POST /v1/messages` to `POST /v1/memory/search` (1:4 is one write for four searches); the
operations are shuffled (fixed seed), and `--concurrency` clients send them back to back. Search
queries come from a small vocabulary, so repeated queries meet the caches as a chatbot's would.
A `429` (or `503`) is waited out as its Retry-After says and sent again, up to `--max-retries`
times (writes carry a client_message_id, so a retry never stores twice); the time of a request
includes its waits. Prints the success rate, the 429s met and those left after the retries, and
p50/p95/p99 per operation; with `--write`, also puts the table in that Markdown file (block
`load_test`, one line per `--label`, so runs of several configurations sit side by side).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import shlex
import statistics
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from tqdm import tqdm

from memory_layer.kit.client import RetryCount, send

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import write_block  # noqa: E402

DEFAULT_BASE_URL = "http://127.0.0.1:8000"

TOPICS = ["parrot", "garden", "invoice", "birthday", "allergy", "holiday", "python", "coffee",
          "marathon", "piano", "mortgage", "dentist"]
PHRASES = ["I love my {t}", "remind me about the {t} next week", "what did I say about the {t}?",
           "my {t} story from last year", "the {t} costs 42 euros", "never forget the {t}"]


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Answers waited out and sent again (429 and 503), per operation.
    retried: dict[str, RetryCount] = field(default_factory=lambda: defaultdict(RetryCount))


def parse_mix(text: str) -> tuple[int, int]:
    writes, _, searches = text.partition(":")
    mix = int(writes), int(searches or 0)
    if min(mix) < 0 or sum(mix) == 0:
        raise argparse.ArgumentTypeError("--mix is write:search, e.g. 1:4")
    return mix


def plan(requests: int, mix: tuple[int, int], rng: random.Random) -> list[str]:
    writes = round(requests * mix[0] / sum(mix))
    operations = ["write"] * writes + ["search"] * (requests - writes)
    rng.shuffle(operations)
    return operations


async def one(client: httpx.AsyncClient, operation: str, tenant: str, rng: random.Random,
              results: Results, max_retries: int = 5) -> None:
    topic = rng.choice(TOPICS)
    body: dict[str, object]
    if operation == "write":
        tag = uuid.uuid4().hex
        url, body = "/v1/messages", {
            "tenant_id": tenant, "conversation_id": f"load-{rng.randrange(20)}", "role": "user",
            "content": rng.choice(PHRASES).format(t=topic) + f" ({tag[:8]})",
            "client_message_id": f"load-{tag}",
        }
    else:
        url, body = "/v1/memory/search", {
            "tenant_id": tenant, "query": f"what about my {topic}?", "top_k": 5,
        }
    started = time.perf_counter()
    try:
        response = await send(
            client, "POST", url, json=body, attempts=max_retries + 1,
            count=results.retried[operation],
        )
    except httpx.HTTPError:
        results.failures[operation] += 1
        return
    results.latencies[operation].append((time.perf_counter() - started) * 1000)
    results.statuses[operation][response.status_code] += 1


async def run(args: argparse.Namespace) -> tuple[Results, float]:
    rng = random.Random(args.seed)
    operations = plan(args.requests, args.mix, rng)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for operation in operations:
        queue.put_nowait(operation)
    results = Results()
    bar = tqdm(total=len(operations), unit="req", disable=args.quiet)
    limits = httpx.Limits(max_connections=args.concurrency)
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    async with httpx.AsyncClient(
        base_url=args.base_url, headers=headers, limits=limits, timeout=args.timeout
    ) as client:

        async def worker(seed: int) -> None:
            local = random.Random(seed)
            while not queue.empty():
                await one(client, queue.get_nowait(), args.tenant_id, local, results,
                          args.max_retries)
                bar.update()

        started = time.perf_counter()
        await asyncio.gather(*(worker(args.seed + i) for i in range(args.concurrency)))
        elapsed = time.perf_counter() - started
    bar.close()
    return results, elapsed


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def summary(results: Results, elapsed: float, label: str) -> tuple[str, list[str]]:
    """A readable summary, and the Markdown rows of the table (one per operation)."""
    lines, rows = [], []
    total = sum(sum(codes.values()) for codes in results.statuses.values())
    total += sum(results.failures.values())
    ok = sum(n for codes in results.statuses.values() for code, n in codes.items() if code < 300)
    limited = sum(codes.get(429, 0) for codes in results.statuses.values())
    waited = sum(count.waited.get(429, 0) for count in results.retried.values())
    lines.append(f"{total} requests in {elapsed:.1f} s ({total / elapsed:.0f}/s): "
                 f"{100 * ok / max(total, 1):.1f}% succeeded, {waited} answers 429 waited out "
                 f"and retried, {limited} still 429 after the retries")
    for operation in ("write", "search"):
        codes = results.statuses.get(operation, {})
        count = sum(codes.values()) + results.failures.get(operation, 0)
        if count == 0:
            continue
        served = [code for code in codes if code < 300]
        succeeded = sum(codes[code] for code in served)
        times = results.latencies[operation]
        p50, p95, p99 = (percentile(times, q) for q in (50, 95, 99))
        others = {code: n for code, n in sorted(codes.items()) if code >= 300 and code != 429}
        lines.append(
            f"  {operation:6} {count:6} sent, {100 * succeeded / count:5.1f}% ok, "
            f"{results.retried[operation].waited.get(429, 0)} x 429 waited out, "
            f"{codes.get(429, 0)} x 429 in the end, other {others or 'none'}, "
            f"{results.failures.get(operation, 0)} connection errors; "
            f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms"
        )
        rows.append(
            f"| {label} | {operation} | {count} | {100 * succeeded / count:.1f}% | "
            f"{codes.get(429, 0)} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {total / elapsed:.0f} |"
        )
    return "\n".join(lines), rows


HEADER = ("| run | operation | requests | ok | 429 | p50 ms | p95 ms | p99 ms | all req/s |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|---:|")


def record(path: Path, label: str, rows: list[str], command: str) -> None:
    """Keep one set of rows per label in the `load_test` block of `path`."""
    text = path.read_text() if path.exists() else ""
    begin, end = "<!-- load_test:begin -->", "<!-- load_test:end -->"
    kept: list[str] = []
    if begin in text:
        block = text.split(begin, 1)[1].split(end, 1)[0]
        kept = [line for line in block.splitlines()
                if line.startswith("| ") and not line.startswith(("| run ", f"| {label} |"))]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    notes = [line for line in (text.split(begin, 1)[1].split(end, 1)[0].splitlines()
                               if begin in text else []) if line.startswith("- ")]
    notes = [note for note in notes if not note.startswith(f"- `{label}`")]
    notes.append(f"- `{label}`: {when} on {platform.machine()}: `{command}`")
    report = "\n".join([HEADER, *kept, *rows, "", *notes])
    write_block(
        path, "load_test", report, title="Benchmarks", heading="Load test (`scripts/load_test.py`)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options; with none, `make run`'s address and a tenant of the run's own."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help="default: %(default)s")
    parser.add_argument("--api-key", default=None, help="a key acting for --tenant-id")
    parser.add_argument("--tenant-id", default=None,
                        help="default: a tenant of its own for the run, load-<random>")
    parser.add_argument("--max-retries", type=int, default=5,
                        help="sends again after a 429 or 503, as Retry-After says (0: none)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--mix", type=parse_mix, default=(1, 4), help="write:search, e.g. 1:4")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--write", type=Path, default=None, help="record the table in this file")
    parser.add_argument("--label", default="run", help="the run's name in the recorded table")
    args = parser.parse_args(argv)
    if args.tenant_id is None:
        args.tenant_id = f"load-{uuid.uuid4().hex[:8]}"
    return args


def main() -> int:
    args = parse_args()
    print(f"{args.base_url}, tenant {args.tenant_id}", file=sys.stderr)
    results, elapsed = asyncio.run(run(args))
    text, rows = summary(results, elapsed, args.label)
    print(text)
    if args.write:
        shown = ["KEY" if a == args.api_key else a for a in sys.argv[1:]]
        record(args.write, args.label, rows, "python scripts/load_test.py " + shlex.join(shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
