"""Time lock acquire and release on PostgreSQL (what the service does) against Redis (SET NX PX).

    python scripts/bench_locks.py [--repeat 500] [--contenders 10] [--grants 200]

Starts a private embedded PostgreSQL and a private redis-server (on free ports, in temporary
directories, stopped at the end).

- Uncontended: one client acquires and releases a lock `--repeat` times. PostgreSQL: the
  service's own functions (`locks.service.acquire` / `release`, each a transaction of one
  statement plus its commit). Redis: what a Redis lock with a fencing number needs, one Lua
  script each (INCR of the fencing key + SET NX PX; release: compare the token and DEL), as
  Redlock does on one instance.
- Handoff (PostgreSQL only): `--contenders` tasks share one lock, each acquiring with a wait and
  releasing at once, until `--grants` grants; the time from a release to the next grant is what
  the LISTEN/NOTIFY wake-up costs. (Redis has no wake-up without polling or pub/sub: not measured.)

Prints a Markdown table; nothing is written to the docs.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import redis.asyncio as redis_async

from memory_layer.kit.db.embedded import start_embedded
from memory_layer.kit.db.engine import create_engine, create_sessionmaker, to_libpq_url
from memory_layer.kit.db.migrations import upgrade_to_head
from memory_layer.kit.db.wakeups import Wakeups, listening
from memory_layer.locks import service as locks

ACQUIRE_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return nil
"""
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"{statistics.median(ordered) * 1000:.2f} | {p95 * 1000:.2f}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _postgres(url: str, repeat: int, contenders: int, grants: int) -> list[str]:
    engine = create_engine(url, pool_size=contenders + 2, max_overflow=0)
    sessionmaker = create_sessionmaker(engine)
    rows: list[str] = []
    try:
        async with listening(Wakeups(to_libpq_url(url))) as wakeups:
            acquire: list[float] = []
            release: list[float] = []
            for _ in range(repeat):
                started = time.perf_counter()
                grant = await locks.acquire(sessionmaker, wakeups, "bench", "one", ttl_seconds=30)
                acquired = time.perf_counter()
                async with sessionmaker.begin() as session:
                    await locks.release(session, "bench", "one", grant.token)
                release.append(time.perf_counter() - acquired)
                acquire.append(acquired - started)
            rows.append(f"| PostgreSQL (the service) | acquire | {_ms(acquire)} |")
            rows.append(f"| PostgreSQL (the service) | release | {_ms(release)} |")

            handoffs: list[float] = []
            released_at: list[float] = []
            done = asyncio.Event()
            count = 0

            async def contender() -> None:
                nonlocal count
                while not done.is_set():
                    try:
                        grant = await locks.acquire(
                            sessionmaker, wakeups, "bench", "shared", ttl_seconds=30,
                            wait_seconds=30,
                        )
                    except locks.LockHeld:
                        continue
                    now = time.perf_counter()
                    if released_at:
                        handoffs.append(now - released_at[-1])
                    count += 1
                    if count >= grants:
                        done.set()
                    async with sessionmaker.begin() as session:
                        await locks.release(session, "bench", "shared", grant.token)
                    released_at.append(time.perf_counter())

            started = time.perf_counter()
            tasks = [asyncio.create_task(contender()) for _ in range(contenders)]
            await done.wait()
            elapsed = time.perf_counter() - started
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            rows.append(
                f"| PostgreSQL, {contenders} waiting contenders | release to next grant | "
                f"{_ms(handoffs)} |"
            )
            rows.append(
                f"| PostgreSQL, {contenders} waiting contenders | grants per second | "
                f"{count / elapsed:.0f} | |"
            )
    finally:
        await engine.dispose()
    return rows


async def _redis(url: str, repeat: int) -> list[str]:
    client = redis_async.Redis.from_url(url)
    acquire_script = client.register_script(ACQUIRE_LUA)
    release_script = client.register_script(RELEASE_LUA)
    acquire: list[float] = []
    release: list[float] = []
    try:
        for _ in range(repeat):
            token = uuid.uuid4().hex
            started = time.perf_counter()
            fencing = await acquire_script(keys=["lock:one", "fence:one"], args=[token, 30_000])
            acquired = time.perf_counter()
            assert fencing is not None
            await release_script(keys=["lock:one"], args=[token])
            release.append(time.perf_counter() - acquired)
            acquire.append(acquired - started)
    finally:
        await client.aclose()
    return [
        f"| Redis, one instance (Lua: SET NX PX + INCR) | acquire | {_ms(acquire)} |",
        f"| Redis, one instance (Lua: GET, DEL) | release | {_ms(release)} |",
    ]


async def main(repeat: int, contenders: int, grants: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="memory-layer-bench-locks-"))
    server = start_embedded(workdir / "pg")
    redis_server = shutil.which("redis-server")
    process: subprocess.Popen[bytes] | None = None
    try:
        server.ensure_database("bench")
        url = server.url("bench")
        await asyncio.to_thread(upgrade_to_head, url, 384)
        rows = await _postgres(url, repeat, contenders, grants)
        if redis_server is not None:
            port = _free_port()
            process = subprocess.Popen(
                [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(workdir)],
                stdout=subprocess.DEVNULL,
            )
            await asyncio.sleep(0.5)
            rows += await _redis(f"redis://127.0.0.1:{port}/0", repeat)
        print(f"{repeat} uncontended rounds; handoff: {contenders} contenders, {grants} grants\n")
        print("| Store | Operation | median ms | p95 ms |")
        print("|---|---|---|---|")
        print("\n".join(rows))
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=10)
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=500)
    parser.add_argument("--contenders", type=int, default=10)
    parser.add_argument("--grants", type=int, default=200)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.repeat, arguments.contenders, arguments.grants))
