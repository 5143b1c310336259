"""What the benchmark and evaluation scripts share: a free port, waiting for a service, the
service's SQL in asyncpg's form, and replacing one marked block of a Markdown report."""

from __future__ import annotations

import asyncio
import os
import re
import socket
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_ready(client: httpx.AsyncClient, attempts: int = 400) -> None:
    """Poll /v1/admin/readiness until the service answers 200 (models take seconds to load)."""
    for _ in range(attempts):
        try:
            if (await client.get("/v1/admin/readiness")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError("service did not become ready")


def percentile(samples: list[float], q: float) -> float:
    """The sample at quantile `q` (0..1) of `samples`, nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def positional(sql: str) -> tuple[str, list[str]]:
    """The service's search SQL with :named parameters turned into asyncpg's $1, $2, ..."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"(?<!:):(\w+)", number, sql), names


def write_block(path: Path, name: str, report: str, *, title: str, heading: str) -> None:
    """Put `report` between `<!-- name:begin -->` and `<!-- name:end -->` in `path`.

    The block is replaced where it exists; otherwise it is appended under `heading`, and a missing
    file starts with `# title`.
    """
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else f"# {title}\n"
    block = f"{begin}\n{report}\n{end}"
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n" + block + "\n"
    path.write_text(text)


def pss_kib(pid: int) -> int:
    """Proportional set size of one process (kB, /proc/<pid>/smaps_rollup): its private pages
    plus its share of each page it shares; 0 for a process that is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (children of children included), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def postmaster_pid(pgdata: Path) -> int:
    """The PostgreSQL server's pid, from the first line of `<pgdata>/postmaster.pid`."""
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def tree_pss_mib(pid: int) -> float:
    """PSS of `pid` and all its descendants, summed (MiB): what they hold together."""
    return sum(pss_kib(p) for p in process_tree(pid)) / 1024


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (every thread), from /proc/<pid>/stat; 0 for a
    process that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def server_cpu_seconds(pgdata: Path) -> float:
    """User + system CPU seconds of a PostgreSQL server: its postmaster and every process below."""
    return sum(process_cpu_seconds(pid) for pid in process_tree(postmaster_pid(pgdata)))
