"""Export a tenant's messages as NDJSON lines, and import such lines into a tenant.

Both directions stream: an export reads a server-side cursor batch by batch, an import writes
its lines in chunks of MEMORY_IMPORT_CHUNK_LINES, one transaction each. Neither holds more than
one batch or chunk in memory, whatever the size of the tenant. The HTTP routes and the
`memory-layer export|import` commands call these functions alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

import anyio
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from memory_layer.audit import service as audit
from memory_layer.channels.service import ChannelRules, load_rules
from memory_layer.config import Settings
from memory_layer.embeddings.providers.base import EmbeddingProvider
from memory_layer.kit.cache import publish_writes
from memory_layer.kit.crypto import EncryptionKeyRing, keyring_of, open_message
from memory_layer.kit.errors import DomainError, InvalidInput
from memory_layer.messages.service import NewRow, check_limits, insert_rows
from memory_layer.models.audit import AuditAction
from memory_layer.models.message import EmbeddingStatus, Kind, Role
from memory_layer.models.policy import PiiMode
from memory_layer.pii.service import PiiRejected, screen_all
from memory_layer.policies.service import EffectivePolicy, QuotaExceeded, load_policy

# pgvector stores 4-byte floats; a larger value would fail the whole chunk's INSERT.
from memory_layer.transfer.format import FLOAT4_MAX, ExportedMessage
from memory_layer.transfer.repository import ExportFilter, TransferRepository

# Rows fetched from the cursor per round trip, and roughly the bytes sent per body chunk.
EXPORT_BATCH_ROWS = 500
EXPORT_FLUSH_BYTES = 256 * 1024


@dataclass(frozen=True)
class ExportQuery:
    """Which messages of which tenant to export; `include_embeddings` adds each vector."""

    tenant_id: str
    conversation_id: str | None = None
    user_id: str | None = None
    since: datetime | None = None
    include_embeddings: bool = False
    channel: str | None = None

    @property
    def filter(self) -> ExportFilter:
        return ExportFilter(
            self.tenant_id, self.conversation_id, self.user_id, self.since, self.channel
        )


def _encode(row: Any, include_embeddings: bool, ring: EncryptionKeyRing, tenant_id: str) -> str:
    # The row's columns are named as the line's fields (model_construct skips embedding_json: it
    # is no field); role and kind become their enums, which the serializer expects.
    fields = {**row._mapping, "role": Role(row.role), "kind": Kind(row.kind)}
    key_id, sealed = fields.pop("encryption_key_id"), fields.pop("ciphertext")
    if key_id is not None and sealed is not None:
        # An encrypted channel's message: exported in plaintext to the authorised caller.
        fields["content"], fields["metadata"] = open_message(
            ring, tenant_id, row.message_id, key_id, sealed
        )
    line = ExportedMessage.model_construct(**fields).model_dump_json(exclude={"embedding"})
    if not include_embeddings:
        return line
    # `embedding` is the model's last field. pgvector's text form of a vector is already a JSON
    # array of the stored float4 values (shortest round-trip decimals), so it is spliced in as
    # it comes: parsing 384 floats into Python and printing them again made a line ten times
    # slower to encode.
    return f'{line[:-1]},"embedding":{row.embedding_json or "null"}}}'


async def _export_chunks(
    sessionmaker: async_sessionmaker[AsyncSession], query: ExportQuery
) -> AsyncGenerator[bytes, None]:
    # A session of its own, not the request's: a streamed body runs after the request's
    # dependencies have closed theirs. One statement, so one consistent snapshot.
    session = sessionmaker()
    try:
        batches = TransferRepository(session).stream_messages(
            query.filter, include_embeddings=query.include_embeddings, batch_rows=EXPORT_BATCH_ROWS
        )
        async with contextlib.aclosing(batches):
            first = await anext(batches, None)
            yield b""  # the cursor is open and the first batch is in: see open_export
            batch = first
            lines: list[str] = []
            size = 0
            while batch is not None:
                for row in batch:
                    line = _encode(
                        row, query.include_embeddings, keyring_of(session), query.tenant_id
                    )
                    lines.append(line)
                    size += len(line)
                    if size >= EXPORT_FLUSH_BYTES:
                        yield ("\n".join(lines) + "\n").encode()
                        lines, size = [], 0
                batch = await anext(batches, None)
            if lines:
                yield ("\n".join(lines) + "\n").encode()
    finally:
        # Shielded: a client that goes away cancels the body, and the connection must still
        # go back to the pool.
        with anyio.CancelScope(shield=True):
            await session.close()


async def open_export(
    sessionmaker: async_sessionmaker[AsyncSession], query: ExportQuery
) -> AsyncGenerator[bytes, None]:
    """Start an export and return its NDJSON body, one `ExportedMessage` per line.

    The query runs before this returns, so a database failure is an error answer rather than a
    cut stream. The caller must iterate the body to its end or `aclose()` it.
    """
    chunks = _export_chunks(sessionmaker, query)
    await anext(chunks)
    return chunks


async def count_exported(sessionmaker: async_sessionmaker[AsyncSession], query: ExportQuery) -> int:
    """How many messages an export would write (for progress bars)."""
    async with sessionmaker() as session:
        return await TransferRepository(session).count(query.filter)


@dataclass
class ImportReport:
    """Counts of an import so far. Every line up to `stored_through_line` is committed (stored,
    or skipped as present); a client resumes with the line after it."""

    lines_read: int = 0
    stored: int = 0
    skipped: int = 0
    conflicts: int = 0
    vectors_reused: int = 0
    queued_for_embedding: int = 0
    stored_through_line: int = 0


class ImportStopped(DomainError):
    """An import stopped at a line; the chunks before it are committed, its own is not."""

    status_code = 422
    code = "invalid_line"

    def __init__(
        self,
        report: ImportReport,
        *,
        line: int,
        message: str,
        code: str,
        status_code: int = 422,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        self.report = report
        self.line = line
        self.message = message
        self.status_code = status_code
        detail: dict[str, Any] = {"line": line, "message": message}
        if errors:
            detail["errors"] = errors
        detail.update(asdict(report))
        super().__init__(detail, code=code)


class _LineTooLong(Exception):
    pass


def max_line_bytes(settings: Settings) -> int:
    """The longest line an import accepts: the longest valid message with every character
    JSON-escaped, its metadata, and a vector of MEMORY_EMBEDDING_DIMENSIONS floats."""
    return (
        6 * settings.max_content_chars
        + 2 * settings.max_metadata_bytes
        + 32 * settings.embedding_dimensions
        + 65_536
    )


async def _split_lines(source: AsyncIterable[bytes], limit: int) -> AsyncGenerator[bytes, None]:
    """The lines of an NDJSON stream, without their newlines; a line past `limit` bytes stops
    the stream before it is buffered whole."""
    buffer = bytearray()
    async for block in source:
        buffer += block
        start = 0
        while (end := buffer.find(b"\n", start)) != -1:
            if end - start > limit:
                raise _LineTooLong
            yield bytes(buffer[start:end])
            start = end + 1
        del buffer[:start]
        if len(buffer) > limit:
            raise _LineTooLong
    if buffer:
        yield bytes(buffer)


def _validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    # Never echo the input: a bad line may be megabytes long.
    return [
        {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def _check(record: ExportedMessage, settings: Settings) -> tuple[str, str] | None:
    """The limits POST /v1/messages applies, as (code, message); None when the line passes."""
    try:
        check_limits(record.content, record.metadata, record.created_at, settings)
    except InvalidInput as exc:
        return exc.code, str(exc.detail)
    if record.embedding and max(map(abs, record.embedding)) > FLOAT4_MAX:
        return "invalid_embedding", "embedding holds a value beyond the range of a 4-byte float"
    return None


# What a line gives a row as it is (role and kind are StrEnums, so already the stored text);
# `embedding` is kept only when reusable.
_SAME_NAMED = [
    field.name
    for field in fields(NewRow)
    if field.name in ExportedMessage.model_fields and field.name != "embedding"
]


async def _row(
    record: ExportedMessage, embedder: EmbeddingProvider, policy: EffectivePolicy
) -> NewRow:
    """The row a line stores, screened by the tenant's PII mode (redacted content is embedded
    afresh: the line's vector was made from the raw text)."""
    same_named = {name: getattr(record, name) for name in _SAME_NAMED}
    embedding = record.embedding
    if policy.pii_mode is not PiiMode.off:
        [screened] = await screen_all(
            [record.content], policy.pii_mode, phone_region=policy.pii_phone_region
        )
        if screened.content != record.content:
            embedding = None
        same_named.update(content=screened.content, pii_kinds=screened.kinds)
    reusable = (
        embedding is not None
        and record.embedding_model == embedder.model_name
        and len(embedding) == embedder.dimensions
    )
    return NewRow(id=record.message_id, embedding=embedding if reusable else None, **same_named)


async def _write_chunk(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant_id: str,
    rows: list[NewRow],
    model: str,
    report: ImportReport,
    policy: EffectivePolicy,
    rules: ChannelRules | None = None,
) -> None:
    async with sessionmaker.begin() as session:
        stored = await insert_rows(
            session, tenant_id, rows, model=model, policy=policy, channel_rules=rules
        )
        passed_over = [row.id for row in rows if row.id not in stored]
        # Passed over: the tenant has the message already, or another message of the tenant
        # holds its client_message_id (that line's text is not stored).
        present = await TransferRepository(session).existing_ids(tenant_id, passed_over)
    await publish_writes(session)  # insert_rows noted the tenant's write
    reused = sum(status == EmbeddingStatus.ready.value for status in stored.values())
    report.stored += len(stored)
    report.vectors_reused += reused
    report.queued_for_embedding += len(stored) - reused
    report.skipped += sum(row_id in present for row_id in passed_over)
    report.conflicts += sum(row_id not in present for row_id in passed_over)


async def _audit_import(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant_id: str,
    report: ImportReport,
    actor: audit.Actor,
) -> None:
    # A transaction of its own: the chunks commit one by one, and a stopped import keeps those
    # before the bad line, so the entry says what is committed whichever way the import ended.
    async with sessionmaker.begin() as session:
        await audit.record(
            session,
            AuditAction.import_completed,
            actor=actor,
            tenant_id=tenant_id,
            target=f"tenant:{tenant_id}",
            counts=asdict(report),
        )


async def import_ndjson(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant_id: str,
    source: AsyncIterable[bytes],
    *,
    settings: Settings,
    embedder: EmbeddingProvider,
    actor: audit.Actor,
) -> ImportReport:
    """Import NDJSON lines in the export's format into `tenant_id`, idempotently; audited
    (`import.completed`, also when a bad line stops it, with the counts committed before it).

    Message ids, created_at, archived_at and expires_at are kept; a vector made by the running
    model is reused, any other message is stored pending for the embedding worker. The tenant's
    PII mode screens every line's content and its quotas apply to every chunk. A bad line (or a
    chunk past a quota) raises `ImportStopped` naming it: the chunks before it stay committed,
    its own is not written.
    """
    report = ImportReport()
    policy = await load_policy(sessionmaker, tenant_id, settings)
    # Lines land in the `default` channel: when the tenant made it encrypted, they are sealed.
    rules = await load_rules(sessionmaker, tenant_id)
    chunk: list[NewRow] = []
    limit = max_line_bytes(settings)
    number = 0

    async def flush() -> None:
        try:
            await _write_chunk(
                sessionmaker, tenant_id, chunk, embedder.model_name, report, policy, rules
            )
        except QuotaExceeded as exc:
            raise stop(exc.code, exc.message, status_code=exc.status_code) from None
        report.stored_through_line = number
        chunk.clear()

    def stop(code: str, message: str, **extra: Any) -> ImportStopped:
        report.lines_read = number
        return ImportStopped(report, line=number, code=code, message=message, **extra)

    try:
        lines = _split_lines(source, limit)
        async with contextlib.aclosing(lines):
            while True:
                try:
                    line = await anext(lines, None)
                except _LineTooLong:
                    number += 1
                    raise stop(
                        "line_too_long", f"line {number} is longer than {limit} bytes"
                    ) from None
                except DomainError as exc:  # the body's own limit (413), from the transport
                    number += 1
                    raise stop(exc.code, str(exc.detail), status_code=exc.status_code) from None
                if line is None:
                    break
                number += 1
                if not line.strip():
                    continue  # blank lines (a trailing newline, CRLF leftovers) carry nothing
                try:
                    record = ExportedMessage.model_validate_json(line)
                except ValidationError as exc:
                    errors = _validation_errors(exc)
                    first = errors[0]
                    where = "".join(f"{part}: " for part in [".".join(map(str, first["loc"]))] if part)
                    raise stop(
                        "invalid_line", f"line {number}: {where}{first['msg']}", errors=errors
                    ) from None
                problem = _check(record, settings)
                if problem is not None:
                    raise stop(problem[0], f"line {number}: {problem[1]}")
                try:
                    chunk.append(await _row(record, embedder, policy))
                except PiiRejected as exc:  # the kinds, never the values
                    raise stop(exc.code, f"line {number}: {exc.message}") from None
                if len(chunk) >= settings.import_chunk_lines:
                    await flush()
        if chunk:
            await flush()
        report.lines_read = number
        report.stored_through_line = number
    finally:
        await _audit_import(sessionmaker, tenant_id, report, actor)
    return report
