"""SQL of the embedding queue. The queue is the messages table itself: a pending row is a job.

A job is due when `embedding_status = 'pending' AND embedding_next_attempt_at <= now()`. Claiming
takes due rows with FOR UPDATE SKIP LOCKED (concurrent workers never take the same row), stamps
them with the claimer's lease owner and pushes `embedding_next_attempt_at` to the lease's end:
a worker that dies simply lets its rows fall due again. Completion only writes rows whose lease
owner is still the caller, so a worker that outlived its lease cannot overwrite newer work.

Status values are spliced in from the enum (as literals, so the partial indexes on them apply);
every other value is a bind parameter, vectors typed with pgvector's own SQLAlchemy type.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pgvector import Vector
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from memory_layer.kit.crypto import keyring_of, open_message
from memory_layer.kit.db.vectors import vector_array_param
from memory_layer.models.message import EmbeddingStatus

CHANNEL = "memory_layer_embeddings"
# A turn stored already embedded, whose context vector is due (migration 0011).
CONTEXT_CHANNEL = "memory_layer_context"

PENDING = f"'{EmbeddingStatus.pending.value}'"
READY = f"'{EmbeddingStatus.ready.value}'"
FAILED = f"'{EmbeddingStatus.failed.value}'"
# Every statement that ends or hands back a lease clears it the same way.
NO_LEASE = "embedding_lease_owner = NULL, embedding_lease_expires_at = NULL"
# A row queued afresh: pending, due now, with a full attempt budget.
REQUEUED = (
    f"embedding_status = {PENDING}, embedding_attempts = 0, embedding_next_attempt_at = now(), "
    f"{NO_LEASE}"
)

CLAIM_SQL = text(f"""
WITH due AS (
    SELECT tenant_id, id
    FROM messages
    WHERE embedding_status = {PENDING} AND embedding_next_attempt_at <= now()
    ORDER BY embedding_next_attempt_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE messages m
SET embedding_lease_owner = :owner,
    embedding_lease_expires_at = now() + make_interval(secs => :lease_seconds),
    embedding_next_attempt_at = now() + make_interval(secs => :lease_seconds),
    embedding_attempts = m.embedding_attempts + 1
FROM due
WHERE m.tenant_id = due.tenant_id AND m.id = due.id
RETURNING m.tenant_id, m.id, m.content, m.embedding_attempts, m.request_id, m.encryption_key_id,
          m.ciphertext
""")

COMPLETE_SQL = text(f"""
UPDATE messages m
SET embedding = v.embedding,
    embedding_model = :model,
    embedding_status = {READY},
    embedded_at = now(),
    embedding_error = NULL,
    embedding_next_attempt_at = NULL,
    {NO_LEASE}
FROM unnest(CAST(:tenant_ids AS text[]), CAST(:ids AS uuid[]), :vectors)
     AS v(tenant_id, id, embedding)
WHERE m.tenant_id = v.tenant_id AND m.id = v.id
  AND m.embedding_status = {PENDING} AND m.embedding_lease_owner = :owner
RETURNING m.id
""").bindparams(vector_array_param("vectors"))

# A failed attempt either schedules the next one (after `delay` seconds) or, with no attempts left,
# parks the row as 'failed' with its last error until an operator re-queues it. Provider-wide
# conditions (rate limits, outages) give the attempt back: they say nothing about the row.
FAIL_SQL = text(f"""
UPDATE messages m
SET embedding_attempts = m.embedding_attempts - CASE WHEN v.counts THEN 0 ELSE 1 END,
    embedding_status = CASE
        WHEN v.counts AND m.embedding_attempts >= :max_attempts THEN {FAILED} ELSE {PENDING} END,
    embedding_next_attempt_at = CASE
        WHEN v.counts AND m.embedding_attempts >= :max_attempts THEN NULL
        ELSE now() + make_interval(secs => v.delay) END,
    embedding_error = v.error,
    {NO_LEASE}
FROM unnest(CAST(:tenant_ids AS text[]), CAST(:ids AS uuid[]), CAST(:errors AS text[]),
            CAST(:delays AS float8[]), CAST(:counts AS boolean[]))
     AS v(tenant_id, id, error, delay, counts)
WHERE m.tenant_id = v.tenant_id AND m.id = v.id
  AND m.embedding_status = {PENDING} AND m.embedding_lease_owner = :owner
RETURNING m.id, m.embedding_status
""")

RELEASE_SQL = text(f"""
UPDATE messages
SET embedding_next_attempt_at = now(),
    embedding_attempts = greatest(embedding_attempts - 1, 0),
    {NO_LEASE}
WHERE embedding_lease_owner = :owner AND embedding_status = {PENDING}
""")

NEXT_DUE_SQL = text(
    f"SELECT min(embedding_next_attempt_at) FROM messages WHERE embedding_status = {PENDING}"
)

# How long the longest-waiting due row has waited past its due time: the queue's lag. A row is due
# from its insert (or its retry time); a leased row is not due, so work in hand does not count.
# Read from the pending partial index; imported rows' old created_at never inflate it.
OLDEST_DUE_AGE_SQL = text(f"""
SELECT coalesce(extract(epoch FROM now() - min(embedding_next_attempt_at)), 0)
FROM messages
WHERE embedding_status = {PENDING} AND embedding_next_attempt_at <= now()
""")

# Context vectors (MEMORY_CONTEXT_VECTORS): a turn that has its own vector but no context vector
# is a job of the worker's second queue (the partial index ix_messages_context_pending). Claiming
# leases it with the same lease columns as the main queue (which a ready row does not otherwise
# use) and returns its text with the previous turn of its conversation, by (created_at, id):
# the (tenant, conversation, created_at) index serves that look-up. A turn whose text is sealed
# (an encrypted channel: its content column is empty), or follows a sealed one, and a turn whose
# vector the client supplied (made by another model than ours) get no previous turn: their own
# vector serves as their context vector.
CONTEXT_PENDING = (
    f"context_embedding IS NULL AND embedding_status = {READY} AND kind = 'message'"
)
CLAIM_CONTEXT_SQL = text(f"""
WITH due AS (
    SELECT tenant_id, id
    FROM messages
    WHERE {CONTEXT_PENDING}
      AND (embedding_lease_expires_at IS NULL OR embedding_lease_expires_at <= now())
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE messages m
SET embedding_lease_owner = :owner,
    embedding_lease_expires_at = now() + make_interval(secs => :lease_seconds)
FROM due
WHERE m.tenant_id = due.tenant_id AND m.id = due.id
RETURNING m.tenant_id, m.id, m.content, m.request_id, CASE
    WHEN m.ciphertext IS NULL AND NOT m.embedding_supplied THEN (
        SELECT CASE WHEN p.ciphertext IS NULL THEN p.content END FROM messages p
        WHERE p.tenant_id = m.tenant_id AND p.conversation_id = m.conversation_id
          AND p.kind = 'message' AND (p.created_at, p.id) < (m.created_at, m.id)
        ORDER BY p.created_at DESC, p.id DESC
        LIMIT 1
    )
END AS previous
""")

# A NULL vector stands for "the turn's own vector": the first turn of a conversation (nothing
# before it) and a text the provider refused in context.
COMPLETE_CONTEXT_SQL = text(f"""
UPDATE messages m
SET context_embedding = coalesce(v.embedding, m.embedding),
    {NO_LEASE}
FROM unnest(CAST(:tenant_ids AS text[]), CAST(:ids AS uuid[]), :vectors)
     AS v(tenant_id, id, embedding)
WHERE m.tenant_id = v.tenant_id AND m.id = v.id
  AND m.embedding_status = {READY} AND m.embedding_lease_owner = :owner
RETURNING m.id
""").bindparams(vector_array_param("vectors"))

RELEASE_CONTEXT_SQL = text(f"""
UPDATE messages SET {NO_LEASE}
WHERE embedding_lease_owner = :owner AND embedding_status = {READY}
""")


def context_text(previous: str | None, content: str) -> str | None:
    """The text of a turn's context vector: the previous turn, then the turn (None: no previous
    turn, the turn's own vector serves)."""
    if previous is None:
        return None
    return f"{previous}\n{content}"


# Rows whose vector is not the given model's (or missing): what a model change leaves behind.
# A vector the client supplied is the client's: never stale (it is re-embedded only when the
# column is retyped to another dimension, which clears every vector).
STALE = "(embedding_model IS DISTINCT FROM :model OR embedding IS NULL) AND NOT embedding_supplied"


@dataclass(frozen=True)
class Job:
    tenant_id: str
    id: uuid.UUID
    content: str
    attempts: int
    # X-Request-ID of the request that stored the text, for the worker's log lines.
    request_id: str | None = None


@dataclass(frozen=True)
class ContextJob:
    tenant_id: str
    id: uuid.UUID
    # "previous turn, then the turn"; None for the first turn of a conversation.
    text: str | None
    request_id: str | None = None


@dataclass(frozen=True)
class Failure:
    job: Job
    error: str
    delay_seconds: float
    counts: bool


def _stale_statuses(include_failed: bool) -> str:
    return f"({READY}, {FAILED})" if include_failed else f"({READY})"


def _tenant_clause(tenant_id: str | None, params: dict[str, Any]) -> str:
    if tenant_id is None:
        return ""
    params["tenant_id"] = tenant_id
    return " AND tenant_id = :tenant_id"


class EmbeddingJobRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(self, owner: uuid.UUID, limit: int, lease_seconds: float) -> list[Job]:
        result = await self.session.execute(
            CLAIM_SQL, {"owner": owner, "limit": limit, "lease_seconds": lease_seconds}
        )
        # An encrypted channel's text is opened here, in memory, for the model only.
        ring = keyring_of(self.session)
        return [
            Job(
                r.tenant_id, r.id,
                r.content if r.ciphertext is None
                else open_message(ring, r.tenant_id, r.id, r.encryption_key_id, r.ciphertext)[0],
                r.embedding_attempts, r.request_id,
            )
            for r in result
        ]

    async def complete(
        self, owner: uuid.UUID, model: str, done: list[tuple[Job, list[float]]]
    ) -> set[uuid.UUID]:
        """Write the vectors of rows the owner still leases; the ids written."""
        if not done:
            return set()
        result = await self.session.execute(
            COMPLETE_SQL,
            {
                "owner": owner,
                "model": model,
                "tenant_ids": [job.tenant_id for job, _ in done],
                "ids": [job.id for job, _ in done],
                "vectors": [Vector(vector) for _, vector in done],
            },
        )
        return {row.id for row in result}

    async def claim_context(
        self, owner: uuid.UUID, limit: int, lease_seconds: float
    ) -> list[ContextJob]:
        """Lease up to `limit` turns that need a context vector, with their context texts."""
        result = await self.session.execute(
            CLAIM_CONTEXT_SQL, {"owner": owner, "limit": limit, "lease_seconds": lease_seconds}
        )
        return [
            ContextJob(r.tenant_id, r.id, context_text(r.previous, r.content), r.request_id)
            for r in result
        ]

    async def complete_context(
        self, owner: uuid.UUID, done: list[tuple[ContextJob, list[float] | None]]
    ) -> set[uuid.UUID]:
        """Write the context vectors of turns the owner still leases (None: the turn's own
        vector); the ids written."""
        if not done:
            return set()
        result = await self.session.execute(
            COMPLETE_CONTEXT_SQL,
            {
                "owner": owner,
                "tenant_ids": [job.tenant_id for job, _ in done],
                "ids": [job.id for job, _ in done],
                "vectors": [Vector(v) if v is not None else None for _, v in done],
            },
        )
        return {row.id for row in result}

    async def release_context(self, owner: uuid.UUID) -> int:
        """Hand back the context jobs this owner still leases."""
        result = await self.session.execute(RELEASE_CONTEXT_SQL, {"owner": owner})
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def count_context_pending(self, tenant_id: str | None = None) -> int:
        """Turns still without a context vector (from the partial index)."""
        params: dict[str, Any] = {}
        statement = text(
            f"SELECT count(*) FROM messages WHERE {CONTEXT_PENDING}"
            + _tenant_clause(tenant_id, params)
        )
        return int((await self.session.execute(statement, params)).scalar_one())

    async def fail(
        self, owner: uuid.UUID, failures: list[Failure], max_attempts: int
    ) -> list[tuple[uuid.UUID, str]]:
        """Record failed attempts; returns (id, new status) of each row still held."""
        if not failures:
            return []
        result = await self.session.execute(
            FAIL_SQL,
            {
                "owner": owner,
                "max_attempts": max_attempts,
                "tenant_ids": [f.job.tenant_id for f in failures],
                "ids": [f.job.id for f in failures],
                "errors": [f.error[:2000] for f in failures],
                "delays": [f.delay_seconds for f in failures],
                "counts": [f.counts for f in failures],
            },
        )
        return [(row.id, row.embedding_status) for row in result]

    async def release(self, owner: uuid.UUID) -> int:
        """Hand back every row this owner still leases (graceful shutdown mid-batch)."""
        result = await self.session.execute(RELEASE_SQL, {"owner": owner})
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def next_due_at(self) -> datetime | None:
        result = await self.session.execute(NEXT_DUE_SQL)
        value: datetime | None = result.scalar_one_or_none()
        return value

    async def oldest_due_age_seconds(self) -> float:
        result = await self.session.execute(OLDEST_DUE_AGE_SQL)
        return float(result.scalar_one())

    async def status_counts(self, tenant_id: str | None = None) -> dict[str, int]:
        """Rows per embedding status (pending and failed come from small partial indexes)."""
        params: dict[str, Any] = {}
        statement = text(
            "SELECT embedding_status, count(*) AS n FROM messages "
            f"WHERE embedding_status IN ({PENDING}, {FAILED}){_tenant_clause(tenant_id, params)} "
            "GROUP BY embedding_status"
        )
        result = await self.session.execute(statement, params)
        counts = {EmbeddingStatus.pending.value: 0, EmbeddingStatus.failed.value: 0}
        counts.update({row.embedding_status: int(row.n) for row in result})
        return counts

    async def requeue_failed(
        self, tenant_id: str | None, message_ids: list[uuid.UUID] | None
    ) -> int:
        """Put failed rows back in the queue with a fresh attempt budget."""
        params: dict[str, Any] = {}
        where = f"embedding_status = {FAILED}" + _tenant_clause(tenant_id, params)
        if message_ids is not None:
            where += " AND id = ANY(CAST(:ids AS uuid[]))"
            params["ids"] = message_ids
        result = await self.session.execute(
            text(f"UPDATE messages SET {REQUEUED} WHERE {where}"), params
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def mark_for_reembed(
        self, model: str, tenant_id: str | None, limit: int, include_failed: bool
    ) -> int:
        """Queue up to `limit` rows embedded by another model (or never embedded) again.

        The old vector is dropped at once: it lives in another model's space, so comparing it with
        the new model's query vectors would rank nonsense. Until its new vector lands, the row is
        found by keyword search like any pending message.
        """
        params: dict[str, Any] = {"model": model, "limit": limit}
        tenant = _tenant_clause(tenant_id, params)
        result = await self.session.execute(
            text(
                f"""
                WITH stale AS (
                    SELECT tenant_id, id FROM messages
                    WHERE embedding_status IN {_stale_statuses(include_failed)}
                      AND {STALE}{tenant}
                    LIMIT :limit
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE messages m
                SET embedding = NULL, context_embedding = NULL, embedding_error = NULL,
                    {REQUEUED}
                FROM stale WHERE m.tenant_id = stale.tenant_id AND m.id = stale.id
                """
            ),
            params,
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def count_stale(self, model: str, tenant_id: str | None, include_failed: bool) -> int:
        params: dict[str, Any] = {"model": model}
        statuses = _stale_statuses(include_failed)
        statement = text(
            f"SELECT count(*) FROM messages WHERE embedding_status IN {statuses} AND {STALE}"
            + _tenant_clause(tenant_id, params)
        )
        return int((await self.session.execute(statement, params)).scalar_one())


async def queue_everything_again(connection: AsyncConnection) -> int:
    """Every message pending with no vector, model or error (after the column was retyped)."""
    result = await connection.execute(
        text(
            f"UPDATE messages SET embedding_model = NULL, embedding_error = NULL, "
            f"embedded_at = NULL, embedding_supplied = false, {REQUEUED}"
        )
    )
    return int(result.rowcount)
