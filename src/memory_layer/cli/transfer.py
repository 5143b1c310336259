"""`memory-layer export | import`: a tenant's messages to and from an NDJSON file.

They call the transfer service on the database directly (no HTTP, no API key): the same line
format as GET /v1/export and POST /v1/import. `import --url` sends the file to a running service's
POST /v1/import instead (with `--api-key`), and waits out a `429` or `503` as its Retry-After
says before sending it again (an import is idempotent: lines already stored are skipped).
FILE `-` means stdout or stdin. A progress bar shows on a terminal; one summary line goes to
stderr at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import IO, Annotated, Any

import httpx
import typer

from memory_layer.audit import service as audit
from memory_layer.cli.common import load_settings, search_cache
from memory_layer.config import Settings
from memory_layer.kit.db.database import open_database
from memory_layer.transfer import service

READ_BLOCK = 1 << 20


def _progress_wanted() -> bool:
    return sys.stderr.isatty()


@contextlib.contextmanager
def _output(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with open(path, "wb") as handle:
        yield handle


@contextlib.contextmanager
def _input(path: str) -> Iterator[tuple[IO[bytes], int | None]]:
    if path == "-":
        yield sys.stdin.buffer, None
        return
    with open(path, "rb") as handle:
        yield handle, os.fstat(handle.fileno()).st_size


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


async def _export(url: str, query: service.ExportQuery, out: IO[bytes]) -> tuple[int, int]:
    from tqdm import tqdm

    from memory_layer.kit.crypto import SESSION_KEYRING
    from memory_layer.kit.db.engine import create_engine, create_sessionmaker

    engine = create_engine(url, pool_size=1, max_overflow=0)
    sessionmaker = create_sessionmaker(engine, {SESSION_KEYRING: load_settings().keyring()})
    lines = written = 0
    show = _progress_wanted()
    try:
        total = await service.count_exported(sessionmaker, query) if show else None
        with tqdm(total=total, unit="msg", desc="exporting", disable=not show) as bar:
            body = await service.open_export(sessionmaker, query)
            async with contextlib.aclosing(body):
                async for chunk in body:
                    out.write(chunk)
                    # JSON never holds a raw newline, so newlines count lines.
                    count = chunk.count(b"\n")
                    lines += count
                    written += len(chunk)
                    bar.update(count)
    finally:
        await engine.dispose()
    return lines, written


def export_command(
    file: Annotated[str, typer.Argument(metavar="FILE", help="where to write; - for stdout")],
    tenant: Annotated[str, typer.Option(help="the tenant whose messages to export")],
    conversation: Annotated[str | None, typer.Option(help="only this conversation")] = None,
    user: Annotated[str | None, typer.Option(help="only this user's messages")] = None,
    include_embeddings: Annotated[
        bool, typer.Option("--include-embeddings", help="add each message's vector")
    ] = False,
    channel: Annotated[str | None, typer.Option(help="only this channel's messages")] = None,
) -> int:
    """Write a tenant's messages to FILE as NDJSON (the format of GET /v1/export)."""
    settings = load_settings()
    query = service.ExportQuery(
        tenant_id=tenant, conversation_id=conversation, user_id=user,
        include_embeddings=include_embeddings, channel=channel,
    )
    started = time.monotonic()
    with open_database(settings) as database, _output(file) as out:
        lines, written = asyncio.run(_export(database.url, query, out))
    typer.echo(
        f"exported {lines} messages of tenant {tenant!r} ({_size(written)}) to "
        f"{'stdout' if file == '-' else file} in {time.monotonic() - started:.1f} s",
        err=True,
    )
    return 0


async def _import(
    url: str, settings: Settings, tenant: str, source: IO[bytes], size: int | None
) -> service.ImportReport:
    from tqdm import tqdm

    from memory_layer.embeddings.providers import build_provider
    from memory_layer.kit.cache import session_info
    from memory_layer.kit.crypto import SESSION_KEYRING
    from memory_layer.kit.db.engine import create_engine, create_sessionmaker

    engine = create_engine(url, pool_size=1, max_overflow=0)
    embedder = await build_provider(settings)
    bar = tqdm(
        total=size, unit="B", unit_scale=True, desc="importing", disable=not _progress_wanted()
    )

    async def blocks() -> AsyncIterator[bytes]:
        while block := source.read(READ_BLOCK):
            bar.update(len(block))
            yield block

    try:
        async with search_cache(settings) as cache:
            return await service.import_ndjson(
                create_sessionmaker(
                    engine, {**session_info(cache), SESSION_KEYRING: settings.keyring()}
                ),
                tenant,
                blocks(),
                settings=settings,
                embedder=embedder,
                actor=audit.CLI,
            )
    finally:
        bar.close()
        await embedder.close()
        await engine.dispose()


def _summary(report: service.ImportReport) -> str:
    return (
        f"{report.lines_read} lines read, {report.stored} stored, {report.skipped} already "
        f"present, {report.conflicts} client_message_id conflicts, {report.vectors_reused} "
        f"vectors reused, {report.queued_for_embedding} queued for embedding"
    )


class ImportRefused(Exception):
    """The service answered an import with an error (after any waits for 429 and 503)."""

    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        try:
            body: Any = response.json()
        except ValueError:
            body = {"error": f"http_{response.status_code}", "detail": response.text[:500]}
        self.code = str(body.get("error", f"http_{response.status_code}"))
        self.detail: Any = body.get("detail")
        detail = self.detail
        if isinstance(detail, dict) and "message" in detail:
            # A line that stopped the import: what it says, and what is committed before it.
            detail = (
                f"{detail['message']} (lines 1-{detail.get('stored_through_line', 0)} are "
                "committed; fix the line and import again, present lines are skipped)"
            )
        super().__init__(f"{self.status} {self.code}: {detail}")


async def import_over_http(
    client: httpx.AsyncClient,
    tenant: str,
    source: IO[bytes],
    *,
    attempts: int = 9,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> dict[str, Any]:
    """POST `source` (seekable NDJSON) to the client's service as `tenant`'s import, sent again
    from its first byte after a 429 or 503, as Retry-After says; the import's report."""
    from memory_layer.kit.client import call

    async def blocks() -> AsyncIterator[bytes]:
        source.seek(0)
        while block := source.read(READ_BLOCK):
            yield block

    def request() -> Awaitable[httpx.Response]:
        return client.post(
            "/v1/import", params={"tenant_id": tenant}, content=blocks(),
            headers={"Content-Type": "application/x-ndjson"},
        )

    response = await call(request, attempts=attempts, sleep=sleep)
    if response.status_code != 200:
        raise ImportRefused(response)
    report: dict[str, Any] = response.json()
    return report


@contextlib.contextmanager
def _seekable(path: str) -> Iterator[IO[bytes]]:
    """FILE, or stdin copied to a temporary file, so a retry can send it again."""
    if path != "-":
        with open(path, "rb") as handle:
            yield handle
        return
    with tempfile.TemporaryFile() as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool)
        yield spool


def _import_to_service(url: str, api_key: str | None, tenant: str, file: str, attempts: int) -> int:
    async def run(source: IO[bytes]) -> dict[str, Any]:
        headers = {"X-API-Key": api_key} if api_key else {}
        # No read deadline: the service answers when the last line is committed.
        timeout = httpx.Timeout(30.0, read=None)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout) as client:
            return await import_over_http(client, tenant, source, attempts=attempts)

    started = time.monotonic()
    with _seekable(file) as source:
        try:
            report = asyncio.run(run(source))
        except ImportRefused as exc:
            typer.echo(f"memory-layer: the service refused the import: {exc}", err=True)
            return 1
        except httpx.HTTPError as exc:
            typer.echo(f"memory-layer: could not reach {url}: {exc}", err=True)
            return 1
    summary = service.ImportReport(
        **{item.name: report[item.name] for item in dataclasses.fields(service.ImportReport)}
    )
    typer.echo(
        f"imported into tenant {tenant!r} through {url}: {_summary(summary)}, in "
        f"{time.monotonic() - started:.1f} s",
        err=True,
    )
    return 0


def import_command(
    file: Annotated[str, typer.Argument(metavar="FILE", help="NDJSON to read; - for stdin")],
    tenant: Annotated[str, typer.Option(help="the tenant to import into")],
    url: Annotated[
        str | None,
        typer.Option(help="a running service (e.g. http://127.0.0.1:8000) to import through "
                     "POST /v1/import, instead of writing to the database"),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(help="with --url: a key that may write the tenant")
    ] = None,
    max_retries: Annotated[
        int, typer.Option(help="with --url: sends again after a 429 or 503, as Retry-After says")
    ] = 8,
) -> int:
    """Import FILE (NDJSON in the export's format) into a tenant; running it again stores nothing
    new."""
    if url is not None:
        return _import_to_service(url, api_key, tenant, file, max_retries + 1)
    settings = load_settings()
    started = time.monotonic()
    with open_database(settings) as database, _input(file) as (source, size):
        try:
            report = asyncio.run(_import(database.url, settings, tenant, source, size))
        except service.ImportStopped as exc:
            stopped = exc.report
            committed = (
                f"Lines 1-{stopped.stored_through_line} are committed"
                if stopped.stored_through_line
                else "No line is committed"
            )
            typer.echo(
                f"memory-layer: import stopped at line {exc.line} ({exc.code}): {exc.message}. "
                f"{committed} ({_summary(stopped)}); fix the line and import again (present "
                "lines are skipped).",
                err=True,
            )
            return 1
    typer.echo(
        f"imported into tenant {tenant!r}: {_summary(report)}, in "
        f"{time.monotonic() - started:.1f} s",
        err=True,
    )
    return 0
