"""What encryption at rest costs per write, per read and per search.

    python scripts/bench_encryption.py [--messages 500] [--repeat 200]

Starts a private embedded PostgreSQL in a temporary directory (stopped at the end) and the app in
process (fake embedder, ASGI client), registers two channels of one tenant, `plain` and `vault`
(`encrypt: true`), and times the same requests on each: POST /v1/messages, GET /v1/messages (a
page of 50), POST /v1/memory/search (vector mode, top 10 of the channel's messages). Also times
sealing and opening one message alone (kit/crypto.py). Prints a Markdown table of medians and
95th percentiles; nothing is written to the docs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from memory_layer.app import create_app
from memory_layer.config import Settings
from memory_layer.kit.crypto import EncryptionKeyRing, open_message, seal_message
from memory_layer.kit.db.embedded import start_embedded
from memory_layer.kit.db.migrations import upgrade_to_head

ADMIN = "bench-admin-key"
TENANT = "bench"
TEXT = (
    "Remember that the quarterly report is due on the 14th; Ada asked for the figures of the "
    "Lisbon office and the travel budget, and prefers the summary as a table. "
)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def crypto_only(repeat: int) -> dict[str, list[float]]:
    ring = EncryptionKeyRing({"k": os.urandom(32)})
    metadata: dict[str, Any] = {"topic": "report", "tags": ["work"]}
    seal, opened = [], []
    for _ in range(repeat * 10):
        row = uuid.uuid4()
        started = time.perf_counter()
        sealed = seal_message(ring, TENANT, row, TEXT, metadata)
        middle = time.perf_counter()
        open_message(ring, TENANT, row, sealed.key_id, sealed.ciphertext)
        seal.append((middle - started) * 1e6)
        opened.append((time.perf_counter() - middle) * 1e6)
    return {"seal (µs)": seal, "open (µs)": opened}


async def main(messages: int, repeat: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="memory-layer-bench-"))
    server = start_embedded(workdir)
    try:
        server.ensure_database("bench")
        url = server.url("bench")
        await asyncio.to_thread(upgrade_to_head, url, 384)
        settings = Settings(
            _env_file=None, database_url=url, admin_api_keys=ADMIN, embedding_provider="fake",
            embedding_dimensions=384, worker_enabled=False, consolidation_enabled=False,
            global_rate_limit="off", tenant_rate_limit="off", data_dir=workdir,
            encryption_keys=f"k1:{base64.b64encode(os.urandom(32)).decode()}",
        )
        app = create_app(settings)
        rows: list[tuple[str, str, float, float]] = []
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench",
            headers={"X-API-Key": ADMIN},
        ) as client:
            for name, encrypt in (("plain", False), ("vault", True)):
                answer = await client.put(
                    f"/v1/admin/tenants/{TENANT}/channels/{name}", json={"encrypt": encrypt}
                )
                answer.raise_for_status()
            # Both channels filled first, then each request timed on the two in turn: the same
            # table size, the same noise of a shared machine for both.
            async def write(n: int, channel: str) -> None:
                answer = await client.post("/v1/messages", json={
                    "tenant_id": TENANT, "conversation_id": f"c{n % 20}", "role": "user",
                    "user_id": "ada", "channel": channel, "content": f"{TEXT}({n})",
                    "metadata": {"n": n},
                })
                answer.raise_for_status()

            async def listing(_: int, channel: str) -> None:
                answer = await client.get("/v1/messages", params={
                    "tenant_id": TENANT, "channel": channel, "limit": 50,
                })
                answer.raise_for_status()

            async def search(n: int, channel: str) -> None:
                answer = await client.post("/v1/memory/search", json={
                    "tenant_id": TENANT, "query": f"figures of the Lisbon office {n}",
                    "mode": "vector", "top_k": 10, "channel": channel,
                })
                answer.raise_for_status()

            for n in range(messages):
                for name in ("plain", "vault"):
                    await write(n, name)
            results: dict[str, dict[str, list[float]]] = {"plain": {}, "vault": {}}
            for measure, call in (
                ("POST /v1/messages (ms)", write),
                ("GET /v1/messages, 50 items (ms)", listing),
                ("POST /v1/memory/search, vector, top 10 (ms)", search),
            ):
                for name in ("plain", "vault"):
                    results[name][measure] = []
                for n in range(repeat):
                    for name in ("plain", "vault"):
                        started = time.perf_counter()
                        await call(messages + n, name)
                        results[name][measure].append((time.perf_counter() - started) * 1000)
            for measure in results["plain"]:
                plain, vault = results["plain"][measure], results["vault"][measure]
                rows.append((measure, "plain", statistics.median(plain), percentile(plain, 0.95)))
                rows.append((measure, "vault", statistics.median(vault), percentile(vault, 0.95)))
        for measure, samples in crypto_only(repeat).items():
            rows.append((measure, "kit/crypto", statistics.median(samples), percentile(samples, 0.95)))
        print(f"{messages + repeat} messages per channel, {repeat} timed calls of each request\n")
        print("| Measure | Channel | Median | p95 |")
        print("|---|---|---:|---:|")
        for measure, channel, median, p95 in rows:
            print(f"| {measure} | {channel} | {median:.2f} | {p95:.2f} |")
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=200)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.messages, arguments.repeat))
