"""`memory-layer export | import`: a tenant's messages to and from an NDJSON file.

They call the transfer service on the database directly (no HTTP, no API key): the same line
format as GET /v1/export and POST /v1/import. FILE `-` means stdout or stdin. A progress bar
shows on a terminal; one summary line goes to stderr at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import IO, Annotated

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

    from memory_layer.kit.db.engine import create_engine, create_sessionmaker

    engine = create_engine(url, pool_size=1, max_overflow=0)
    sessionmaker = create_sessionmaker(engine)
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
) -> int:
    """Write a tenant's messages to FILE as NDJSON (the format of GET /v1/export)."""
    settings = load_settings()
    query = service.ExportQuery(
        tenant_id=tenant, conversation_id=conversation, user_id=user,
        include_embeddings=include_embeddings,
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
                create_sessionmaker(engine, session_info(cache)),
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


def import_command(
    file: Annotated[str, typer.Argument(metavar="FILE", help="NDJSON to read; - for stdin")],
    tenant: Annotated[str, typer.Option(help="the tenant to import into")],
) -> int:
    """Import FILE (NDJSON in the export's format) into a tenant; running it again stores nothing
    new."""
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
