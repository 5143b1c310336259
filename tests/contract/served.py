"""`memory-layer serve` as users run it, on a database of its own, for the contract and fault tests.

A database of its own: these tests send requests for any tenant (and retention runs over all of
them), which must not touch the rows of the other tests sharing the test server.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from memory_layer.auth.service import create_api_key
from memory_layer.kit.db.engine import create_engine, create_sessionmaker
from memory_layer.kit.db.migrations import upgrade_to_head
from tests.fixtures.database import DatabaseServer
from tests.support.cli import CLI, ROOT, base_env, free_port, stop, wait_healthy

ADMIN = "contract-admin-key"
SERVICE = "contract-service-key"
# Far above anything these tests send, so rate limits (where configured) never answer 429.
UNLIMITED = "1000000/minute"


def own_database(db_server: DatabaseServer, prefix: str) -> str:
    """A new, migrated database on the test server; its URL."""
    url = db_server.create_database(f"{prefix}_{uuid.uuid4().hex[:8]}")
    upgrade_to_head(url, 384)
    return url


def bound_key(database_url: str, tenant: str) -> str:
    """A committed API key bound to `tenant`, in plain text."""

    async def create() -> str:
        engine = create_engine(database_url, pool_size=1, max_overflow=0)
        try:
            async with create_sessionmaker(engine).begin() as session:
                _, plaintext = await create_api_key(session, tenant, "contract")
        finally:
            await engine.dispose()
        return plaintext

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, create()).result()


def serve_env(database_url: str, **extra: str) -> dict[str, str]:
    values = {
        # The test database is shared: a consolidation loop would distil every earlier test's
        # turns (tests/consolidation runs its own against a database of its own).
        "MEMORY_CONSOLIDATION_ENABLED": "false",
        **extra,
    }
    return base_env(
        MEMORY_DATABASE_URL=database_url, MEMORY_EMBEDDING_PROVIDER="fake",
        MEMORY_API_KEYS=SERVICE, MEMORY_ADMIN_API_KEYS=ADMIN, MEMORY_LOG_LEVEL="warning",
        MEMORY_GLOBAL_RATE_LIMIT=UNLIMITED, MEMORY_TENANT_RATE_LIMIT=UNLIMITED, **values,
    )


@dataclass
class Served:
    url: str
    port: int
    process: subprocess.Popen[str]
    env: dict[str, str]
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start(env: dict[str, str], port: int | None = None) -> Served:
    port = port or free_port()
    # A file, not a pipe: nobody reads the log while the test runs, and a full pipe would block
    # the server. Kept for reading when a test fails (`Served.log_tail`).
    log = tempfile.NamedTemporaryFile(prefix="memory-layer-serve-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port)], env=env, cwd=ROOT,
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
    except BaseException:
        process.kill()
        process.communicate(timeout=30)
        raise
    return Served(url, port, process, env, Path(log.name))


@contextmanager
def serving(env: dict[str, str]) -> Iterator[Served]:
    served = start(env)
    try:
        yield served
    except BaseException:
        print(f"--- the served process' log ---\n{served.log_tail()}")
        raise
    finally:
        if served.process.poll() is None:
            stop(served.process)
    served.log.unlink(missing_ok=True)  # kept only when the test failed
