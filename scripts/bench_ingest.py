"""Ingestion throughput with background embeddings, side by side with the model's own, in one run.

Starts a private embedded PostgreSQL + pgvector and measures, on the same chat texts (the turns of
scripts/data/eval_conversations.json, cycled to N):

  (a) provider   the local model alone, embedding the texts in batches of MEMORY_WORKER_BATCH_SIZE
                 exactly as the worker calls it (texts per second)
  (b) service    N messages POSTed by C concurrent clients to `memory-layer serve` with
                 MEMORY_ASYNC_EMBEDDINGS=true, until every one is `ready` (messages per second);
                 once with the worker inside serve, once with a separate `memory-layer worker`
  (c) acceptance the share of POSTs answered 202, and the p50/p95 latency of those answers; also
                 with the clients paced to offer half of (a)'s rate together (--paced), the load
                 the model keeps up with, where a 202 waits for nothing but its own INSERT
  (d) kill       a standalone worker SIGKILLed mid-load and replaced: messages lost, messages
                 embedded twice, time until all are ready

(a) and (b) run for each engine of the local model (--backends, MEMORY_LOCAL_BACKEND) with the same
intra-op threads (--threads, MEMORY_LOCAL_MODEL_THREADS) and, side by side, each niceness of the
model's thread in --nices (MEMORY_LOCAL_MODEL_NICE); for each, the peak RSS of `serve` (VmHWM)
and where the time went: the server's own time per POST (its request histogram), the worker's
time per batch (model call plus write) and its batches; for the model's thread, the seconds it
ran, waited for a core while runnable (schedstat) and sat idle waiting for work; and the CPU
seconds of serve's other threads (event loop, pool), of PostgreSQL and of the benchmark's own
HTTP clients.

Usage: python scripts/bench_ingest.py [--messages 1000] [--clients 16] [--backends onnx-int8,torch]
    [--threads 1] [--nices 10,0] [--paced] [--no-standalone] [--no-kill] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import free_port, percentile, wait_ready, write_block  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from memory_layer.config import LocalBackend, Settings  # noqa: E402
from memory_layer.embeddings.providers.local import LocalEmbeddingProvider  # noqa: E402
from memory_layer.kit.db.embedded import start_embedded  # noqa: E402
from memory_layer.kit.db.engine import to_libpq_url  # noqa: E402
from memory_layer.kit.db.migrations import upgrade_to_head  # noqa: E402

DATASET = ROOT / "scripts" / "data" / "eval_conversations.json"
BATCH_SIZE = 64
# The service's texts per model call (MEMORY_EMBEDDING_BATCH_SIZE), so (a) calls the model as the
# worker inside serve does.
MODEL_BATCH = int(Settings.model_fields["embedding_batch_size"].default)
KILL_LEASE_SECONDS = 10
API_KEY = "bench-ingest-key"
CORES = os.cpu_count() or 1


def chat_texts(count: int) -> list[str]:
    data = json.loads(DATASET.read_text())
    turns = [turn["text"] for conv in data["conversations"] for turn in conv["turns"]]
    # Cycled, each copy made unique so no two rows are the same message.
    return [f"{turns[i % len(turns)]} (#{i})" for i in range(count)]


@dataclass
class LoadResult:
    seconds_to_ready: float
    accepted: int
    answers: list[float]
    lost: int
    embedded_twice: int
    peak_rss_mib: float = 0.0
    server_post_ms: float = 0.0
    batches: int = 0
    batch_ms: float = 0.0
    model_cpu_s: float = 0.0
    other_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    model_wait_s: float = 0.0
    postgres_cpu_s: float = 0.0


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def thread_cpu(pid: int) -> dict[tuple[int, str], float]:
    """CPU seconds (user + system) of each thread of the process, by (thread id, name)."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds: dict[tuple[int, str], float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[int(task.name), name] = (int(fields[11]) + int(fields[12])) / tick
    return seconds


def model_schedstat(pid: int) -> tuple[float, float]:
    """Seconds the model's thread has run on a core and has waited, runnable, for one (the first
    two fields of /proc/<pid>/task/<tid>/schedstat): waiting is the time the operating system
    gave the cores to other threads."""
    running = waited = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == "embed-local":
                fields = (task / "schedstat").read_text().split()
                running += int(fields[0]) / 1e9
                waited += int(fields[1]) / 1e9
        except (OSError, IndexError, ValueError):
            continue
    return running, waited


def postgres_cpu(pgdata: Path) -> float:
    """CPU seconds of the PostgreSQL server: the postmaster, its live children (the pool's
    backends, the background writers) and the children it has already reaped."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    seconds = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(proc.name) == postmaster:
            seconds += sum(int(f) for f in fields[11:15]) / tick
        elif int(fields[1]) == postmaster:
            seconds += (int(fields[11]) + int(fields[12])) / tick
    return seconds


def cpu_besides_model(
    before: dict[tuple[int, str], float], after: dict[tuple[int, str], float]
) -> float:
    """CPU seconds spent between the snapshots by every thread but the model's (`embed-local`,
    named by the provider; its own time is read from schedstat, `model_schedstat`)."""
    return sum(
        seconds - before.get(key, 0.0) for key, seconds in after.items() if key[1] != "embed-local"
    )


def histogram_mean(exposition: str, name: str, labels: dict[str, str]) -> tuple[float, int]:
    """(sum, count) of a histogram over the series whose labels include `labels`."""
    total, count = 0.0, 0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if not all(sample.labels.get(k) == v for k, v in labels.items()):
                continue
            if sample.name == f"{name}_sum":
                total += sample.value
            elif sample.name == f"{name}_count":
                count += int(sample.value)
    return total, count


class Bench:
    def __init__(self, url: str, args: argparse.Namespace, data_dir: Path, pgdata: Path) -> None:
        self.url = url
        self.pgdata = pgdata
        self.args = args
        self.data_dir = data_dir
        self.backend = LocalBackend.onnx_int8
        self.nice = 10
        self.cli = str(Path(sys.executable).parent / "memory-layer")
        self.poller: asyncpg.Connection | None = None

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
        env.update(
            MEMORY_DATABASE_URL=self.url,
            MEMORY_LOG_LEVEL="warning",
            MEMORY_ASYNC_EMBEDDINGS="true",
            MEMORY_WORKER_BATCH_SIZE=str(BATCH_SIZE),
            MEMORY_API_KEYS=API_KEY,
            MEMORY_DATA_DIR=str(self.data_dir),
            MEMORY_LOCAL_BACKEND=self.backend.value,
            MEMORY_LOCAL_MODEL_THREADS=str(self.args.threads),
            MEMORY_LOCAL_MODEL_NICE=str(self.nice),
            # 16 clients on one address: a limit far above the load, so every POST is still
            # counted (the limiter's cost stays in the measurement) but none is refused.
            MEMORY_GLOBAL_RATE_LIMIT="1000000/minute",
        )
        env.update(extra)
        return env

    async def reset(self) -> None:
        connection = await asyncpg.connect(to_libpq_url(self.url))
        await connection.execute("TRUNCATE messages")
        await connection.close()

    async def counts(self) -> tuple[int, int, int]:
        # One connection for all polls: a new one every 50 ms would cost the server a fork each.
        if self.poller is None:
            self.poller = await asyncpg.connect(to_libpq_url(self.url))
        row = await self.poller.fetchrow(
            "SELECT count(*) AS total, count(*) FILTER (WHERE embedding_status = 'ready') AS ready,"
            " count(*) FILTER (WHERE embedding_attempts > 1) AS twice FROM messages"
        )
        assert row is not None
        return int(row["total"]), int(row["ready"]), int(row["twice"])

    async def load(
        self,
        texts: list[str],
        *,
        standalone: bool,
        kill_at: float | None = None,
        pace: float = 0.0,
    ) -> LoadResult:
        """POST every text from the clients, as fast as they are answered, or (`pace` > 0) text i
        no earlier than i / pace seconds after the start."""
        await self.reset()
        port = free_port()
        worker_env = {"MEMORY_WORKER_LEASE_SECONDS": str(KILL_LEASE_SECONDS)} if kill_at else {}
        server = subprocess.Popen(
            [self.cli, "serve", "--port", str(port)],
            env=self.env(MEMORY_WORKER_ENABLED="false" if standalone else "true"),
            cwd=ROOT,
        )
        workers: list[subprocess.Popen[bytes]] = []
        if standalone:
            workers.append(
                subprocess.Popen([self.cli, "worker"], env=self.env(**worker_env), cwd=ROOT)
            )
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", timeout=60, headers={"X-API-Key": API_KEY}
            ) as client:
                await wait_ready(client)
                await asyncio.sleep(2 if standalone else 0)  # the worker loads its model
                answers: list[float] = []
                accepted = 0
                queue: asyncio.Queue[int] = asyncio.Queue()
                for i in range(len(texts)):
                    queue.put_nowait(i)

                async def post_all() -> None:
                    nonlocal accepted
                    while not queue.empty():
                        i = queue.get_nowait()
                        if pace > 0:
                            await asyncio.sleep(max(0.0, started + i / pace - time.perf_counter()))
                        body = {"tenant_id": f"ingest-{i % 10}", "conversation_id": f"c{i % 37}",
                                "role": "user" if i % 2 else "assistant", "content": texts[i]}
                        sent = time.perf_counter()
                        response = await client.post("/v1/messages", json=body)
                        answers.append(time.perf_counter() - sent)
                        response.raise_for_status()
                        accepted += response.status_code == 202

                started = time.perf_counter()
                client_cpu = time.process_time()
                server_cpu = thread_cpu(server.pid)
                model_ran, model_waited = model_schedstat(server.pid)
                postgres_seconds = postgres_cpu(self.pgdata)
                posting = asyncio.gather(*(post_all() for _ in range(self.args.clients)))
                killed = False
                while True:
                    total, ready, twice = await self.counts()
                    if kill_at is not None and not killed and ready >= kill_at * len(texts):
                        # Mid-load and mid-batch: the worker holds a leased batch right now.
                        workers[0].send_signal(signal.SIGKILL)
                        workers[0].wait()
                        workers.append(
                            subprocess.Popen(
                                [self.cli, "worker"], env=self.env(**worker_env), cwd=ROOT
                            )
                        )
                        killed = True
                    if posting.done() and (posting.exception() is not None or ready == len(texts)):
                        break
                    if time.perf_counter() - started > 900:
                        raise RuntimeError(f"not all ready after 900 s: {ready}/{len(texts)}")
                    await asyncio.sleep(0.05)
                elapsed = time.perf_counter() - started
                await posting
                client_cpu = time.process_time() - client_cpu
                exposition = (await client.get("/metrics")).text
                rss = peak_rss_mib(server.pid)
                other_cpu = cpu_besides_model(server_cpu, thread_cpu(server.pid))
                ran, waited = model_schedstat(server.pid)
                model_cpu, model_waited = ran - model_ran, waited - model_waited
                postgres_seconds = postgres_cpu(self.pgdata) - postgres_seconds
        finally:
            for process in [server, *workers]:
                if process.poll() is None:
                    process.terminate()
                    process.wait(timeout=30)
        post_sum, post_count = histogram_mean(
            exposition, "memory_http_request_duration_seconds", {"method": "POST"}
        )
        batch_sum, batch_count = histogram_mean(exposition, "memory_worker_batch_duration_seconds", {})
        return LoadResult(
            elapsed, accepted, answers, len(texts) - total, twice, rss,
            post_sum / max(post_count, 1) * 1000, batch_count, batch_sum / max(batch_count, 1) * 1000,
            model_cpu, other_cpu, client_cpu, model_waited, postgres_seconds,
        )


def ceiling(result: LoadResult, messages: int, provider: float) -> float:
    """The highest ratio to (a) these cores allow for the CPU this run spent per message: every
    core busy all the time, the model, the rest of serve, PostgreSQL and the clients packed
    without a gap (and never above 1: the model has one thread)."""
    spent = result.model_cpu_s + result.other_cpu_s + result.postgres_cpu_s + result.client_cpu_s
    return min(1.0, CORES * messages / spent / provider) if spent > 0 else 1.0


async def provider_throughput(
    texts: list[str], backend: LocalBackend, threads: int, cache_dir: Path
) -> float:
    model = await asyncio.to_thread(
        LocalEmbeddingProvider.load, None, batch_size=MODEL_BATCH, backend=backend, threads=threads,
        cache_dir=cache_dir,
    )
    await model.embed_documents(texts[:BATCH_SIZE])  # warm-up
    started = time.perf_counter()
    for i in range(0, len(texts), BATCH_SIZE):
        await model.embed_documents(texts[i : i + BATCH_SIZE])
    elapsed = time.perf_counter() - started
    await model.close()
    return len(texts) / elapsed


async def run(args: argparse.Namespace) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="ml-bench-ingest-"))
    embedded = start_embedded(workdir)
    backends = [LocalBackend(name) for name in args.backends.split(",")]
    nices = [int(n) for n in args.nices.split(",")]
    alone: dict[LocalBackend, list[float]] = {b: [] for b in backends}
    served: dict[tuple[LocalBackend, int], list[LoadResult]] = {
        (b, n): [] for b in backends for n in nices
    }
    paced: dict[LocalBackend, list[LoadResult]] = {b: [] for b in backends}
    standalone: LoadResult | None = None
    kill: LoadResult | None = None
    try:
        embedded.ensure_database()
        url = embedded.url()
        await asyncio.to_thread(upgrade_to_head, url, 384)
        texts = chat_texts(args.messages)
        bench = Bench(url, args, workdir, embedded.pgdata)
        # Rounds interleave the engines, each measured alone then served, so all share the
        # machine's state; the report takes medians over rounds.
        for _ in range(args.rounds):
            for backend in backends:
                bench.backend = backend
                alone[backend].append(
                    await provider_throughput(texts, backend, args.threads, workdir / "models")
                )
                for nice in nices:
                    bench.nice = nice
                    served[backend, nice].append(await bench.load(texts, standalone=False))
                    print(backend.value, f"nice {nice}", f"alone {alone[backend][-1]:.1f}/s",
                          f"served {args.messages / served[backend, nice][-1].seconds_to_ready:.1f}/s",
                          file=sys.stderr)
                bench.nice = nices[0]
                if args.paced:
                    paced[backend].append(
                        await bench.load(texts, standalone=False, pace=alone[backend][-1] / 2)
                    )
        bench.backend = backends[0]
        bench.nice = nices[0]
        if args.standalone:
            standalone = await bench.load(texts, standalone=True)
        if args.kill:
            kill = await bench.load(texts, standalone=True, kill_at=0.3)
    finally:
        embedded.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    messages: int = args.messages

    def rate(result: LoadResult) -> float:
        return messages / result.seconds_to_ready

    def median_of(results: list[LoadResult], pick: Callable[[LoadResult], float]) -> float:
        return statistics.median(pick(r) for r in results)

    mean_words = statistics.fmean(len(t.split()) for t in texts)
    load = os.getloadavg()
    command = " ".join(a for a in sys.argv[1:] if a not in ("--write", str(args.write)))
    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M UTC} on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}: "
        f"`python scripts/bench_ingest.py {command}`.",
        "",
        f"{args.messages} chat turns (mean {mean_words:.0f} words), local model all-MiniLM-L6-v2 with "
        f"{args.threads} intra-op thread(s), worker batches of {BATCH_SIZE}, {args.clients} concurrent "
        f"HTTP clients, MEMORY_ASYNC_EMBEDDINGS=true. Medians of {args.rounds} interleaved round(s); "
        f"load average at the end {load[0]:.1f} (other work shared the 2 cores).",
        "",
        "| engine | measurement | messages/s | ratio to (a) | 202 share | 202 p50 ms | 202 p95 ms "
        "| server ms per POST | worker batches | ms per batch | s to ready | model thread s: running / "
        "waiting for a core / idle | CPU s: rest of serve / PostgreSQL / clients "
        f"| ceiling on {CORES} cores | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(backend: LocalBackend, label: str, results: list[LoadResult], provider: float) -> str:
        service_rate = median_of(results, rate)
        return (
            f"| {backend.value} | {label} | {service_rate:.1f} "
            f"| {service_rate / provider:.2f} "
            f"| {median_of(results, lambda r: r.accepted / messages):.1%} "
            f"| {median_of(results, lambda r: percentile(r.answers, 0.5) * 1000):.1f} "
            f"| {median_of(results, lambda r: percentile(r.answers, 0.95) * 1000):.1f} "
            f"| {median_of(results, lambda r: r.server_post_ms):.1f} "
            f"| {median_of(results, lambda r: r.batches):.0f} "
            f"| {median_of(results, lambda r: r.batch_ms):.0f} "
            f"| {median_of(results, lambda r: r.seconds_to_ready):.2f} "
            f"| {median_of(results, lambda r: r.model_cpu_s):.2f} / "
            f"{median_of(results, lambda r: r.model_wait_s):.2f} / "
            f"{median_of(results, lambda r: r.seconds_to_ready - r.model_cpu_s - r.model_wait_s):.2f} "
            f"| {median_of(results, lambda r: r.other_cpu_s):.1f} / "
            f"{median_of(results, lambda r: r.postgres_cpu_s):.1f} / "
            f"{median_of(results, lambda r: r.client_cpu_s):.1f} "
            f"| {median_of(results, lambda r: ceiling(r, messages, provider)):.2f} "
            f"| {median_of(results, lambda r: r.peak_rss_mib):.0f} |"
        )

    for backend in backends:
        provider = statistics.median(alone[backend])
        lines.append(f"| {backend.value} | (a) the model alone, batched like the worker "
                     f"| {provider:.1f} | 1.00 | | | | | | | | | | | |")
        for nice in nices:
            lines.append(row(backend, f"(b) service, worker inside `serve`, model thread nice {nice}",
                             served[backend, nice], provider))
        if paced[backend]:
            lines.append(row(
                backend, f"(c) as (b) nice {nices[0]}, clients paced to {provider / 2:.0f} messages/s "
                "together", paced[backend], provider,
            ))
    if standalone is not None:
        provider = statistics.median(alone[backends[0]])
        lines.append(
            f"| {backends[0].value} | (b) service, separate `memory-layer worker` "
            f"| {rate(standalone):.1f} | {rate(standalone) / provider:.2f} "
            f"| {standalone.accepted / messages:.1%} | {percentile(standalone.answers, 0.5) * 1000:.1f} "
            f"| {percentile(standalone.answers, 0.95) * 1000:.1f} | {standalone.server_post_ms:.1f} "
            f"| | | {standalone.seconds_to_ready:.2f} | | | | {standalone.peak_rss_mib:.0f} |"
        )
    if kill is not None and standalone is not None:
        lines += [
            "",
            f"(d) Worker killed (SIGKILL) after 30% of the messages were ready, a new worker started "
            f"at once, lease {KILL_LEASE_SECONDS} s: {kill.lost} messages lost, "
            f"{args.messages - kill.lost} of {args.messages} ready after {kill.seconds_to_ready:.1f} s "
            f"(vs {standalone.seconds_to_ready:.1f} s without the kill), {kill.embedded_twice} "
            "messages took a second attempt (the killed worker's leased batch, re-claimed after its "
            "lease ran out).",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--backends", default="onnx-int8,onnx,torch",
                        help="comma-separated engines of the local model")
    parser.add_argument("--threads", type=int, default=1, help="MEMORY_LOCAL_MODEL_THREADS")
    parser.add_argument("--nices", default="10,0",
                        help="MEMORY_LOCAL_MODEL_NICE values, side by side (the first for the rest)")
    parser.add_argument("--paced", action="store_true",
                        help="also run with the clients offering half the model's rate together")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-standalone", dest="standalone", action="store_false")
    parser.add_argument("--no-kill", dest="kill", action="store_false")
    parser.add_argument("--write", type=Path, default=None, help="update this Markdown file")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(report)
    if args.write:
        write_block(args.write, "bench_ingest", report, title="Benchmarks",
                    heading="Ingestion with background embeddings (`scripts/bench_ingest.py`)")


if __name__ == "__main__":
    main()
