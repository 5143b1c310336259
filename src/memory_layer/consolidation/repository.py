"""SQL of consolidation: its queue (the messages table, like the embedding queue), facts, summaries.

A turn is a consolidation job while `consolidation_status = 'pending'` (the column's default for
every row stored since migration 0010); it is due once its embedding is settled (ready or failed:
summaries read the vectors, and the embedding worker goes first) and its next attempt time, if
any, has passed. Claiming takes due rows oldest first with FOR UPDATE SKIP LOCKED and stamps the
claimer's lease; completion and failure only write rows the caller still leases, so a worker that
outlived its lease cannot overwrite newer work. A worker that dies leaves its rows to fall due
again when the lease ends.

Derived rows (facts, preferences, summaries) are written with `consolidation_status` NULL: they
are never a job themselves.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from pgvector.sqlalchemy import Vector
from sqlalchemy import Select, Table, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.consolidation.providers.base import KnownFact, Turn
from memory_layer.kit.db.vectors import vector_param
from memory_layer.kit.ids import new_id
from memory_layer.models.message import UNEXPIRED_SQL, EmbeddingStatus, Kind, Message, unexpired

MESSAGES = cast(Table, Message.__table__)
PENDING = "'pending'"
NO_LEASE = "consolidation_lease_owner = NULL, consolidation_lease_expires_at = NULL"
FACT_KINDS = (Kind.fact.value, Kind.preference.value)

CLAIM_SQL = text(f"""
WITH due AS (
    SELECT tenant_id, id
    FROM messages
    WHERE consolidation_status = {PENDING}
      AND (consolidation_next_attempt_at IS NULL OR consolidation_next_attempt_at <= now())
      AND embedding_status <> '{EmbeddingStatus.pending.value}'{{tenant}}
    ORDER BY created_at, id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE messages m
SET consolidation_lease_owner = :owner,
    consolidation_lease_expires_at = now() + make_interval(secs => :lease_seconds),
    consolidation_next_attempt_at = now() + make_interval(secs => :lease_seconds),
    consolidation_attempts = m.consolidation_attempts + 1
FROM due
WHERE m.tenant_id = due.tenant_id AND m.id = due.id
RETURNING m.tenant_id, m.id, m.conversation_id, m.user_id, m.role, m.kind, m.content,
          m.created_at, m.importance, m.consolidation_attempts, m.archived_at,
          {UNEXPIRED_SQL.replace("expires_at", "m.expires_at")} AS live
""")

COMPLETE_SQL = text(f"""
UPDATE messages
SET consolidation_status = 'done', consolidation_error = NULL,
    consolidation_next_attempt_at = NULL, {NO_LEASE}
WHERE tenant_id = ANY(CAST(:tenant_ids AS text[])) AND id = ANY(CAST(:ids AS uuid[]))
  AND consolidation_status = {PENDING} AND consolidation_lease_owner = :owner
RETURNING id
""")

# As the embedding queue's: a failure either schedules the next attempt or, with no attempts
# left, parks the row as 'failed' with its error; provider-wide failures give the attempt back.
FAIL_SQL = text(f"""
UPDATE messages m
SET consolidation_attempts = m.consolidation_attempts - CASE WHEN v.counts THEN 0 ELSE 1 END,
    consolidation_status = CASE
        WHEN v.counts AND m.consolidation_attempts >= :max_attempts THEN 'failed' ELSE {PENDING} END,
    consolidation_next_attempt_at = CASE
        WHEN v.counts AND m.consolidation_attempts >= :max_attempts THEN NULL
        ELSE now() + make_interval(secs => v.delay) END,
    consolidation_error = v.error,
    {NO_LEASE}
FROM unnest(CAST(:tenant_ids AS text[]), CAST(:ids AS uuid[]), CAST(:errors AS text[]),
            CAST(:delays AS float8[]), CAST(:counts AS boolean[]))
     AS v(tenant_id, id, error, delay, counts)
WHERE m.tenant_id = v.tenant_id AND m.id = v.id
  AND m.consolidation_status = {PENDING} AND m.consolidation_lease_owner = :owner
RETURNING m.id, m.consolidation_status
""")

RELEASE_SQL = text(f"""
UPDATE messages
SET consolidation_next_attempt_at = NULL,
    consolidation_attempts = greatest(consolidation_attempts - 1, 0),
    {NO_LEASE}
WHERE consolidation_lease_owner = :owner AND consolidation_status = {PENDING}
""")

# A lock held until the transaction ends, on one user's facts or one conversation's summary:
# two workers reconciling the same user wait for each other instead of both adding a fact.
LOCK_SQL = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")

# The user's current facts, with their similarity to a new fact's vector when one is given.
CURRENT_FACTS_SQL = """
SELECT id, content, kind, metadata, created_at, {similarity} AS similarity
FROM messages
WHERE tenant_id = :tenant_id AND user_id = :user_id
  AND kind IN ('fact', 'preference')
  AND superseded_by IS NULL AND archived_at IS NULL AND {unexpired}
ORDER BY {order}
LIMIT :limit
"""
SIMILARITY = (
    "CASE WHEN embedding_status = 'ready' AND embedding_model = :model "
    "THEN 1.0 - (embedding <=> CAST(:vector AS vector)) END"
)

WINDOW_SQL = text(f"""
SELECT id, role, content, created_at, importance, user_id,
       CASE WHEN embedding_status = 'ready' AND embedding_model = :model THEN embedding END
         AS embedding
FROM messages
WHERE tenant_id = :tenant_id AND conversation_id = :conversation_id AND kind = 'message'
  AND archived_at IS NULL AND {UNEXPIRED_SQL}
ORDER BY created_at DESC, id DESC
LIMIT :limit
""")


@dataclass(frozen=True)
class Job:
    """A claimed turn."""

    tenant_id: str
    id: uuid.UUID
    conversation_id: str
    user_id: str | None
    role: str
    kind: str
    content: str
    created_at: datetime
    importance: float
    attempts: int
    # Archived or expired since it was stored: nothing to distil, the job just completes.
    readable: bool


@dataclass(frozen=True)
class Failure:
    job: Job
    error: str
    delay_seconds: float
    counts: bool


@dataclass(frozen=True)
class CurrentSummary:
    id: uuid.UUID
    content: str
    covers_through: datetime | None
    source_message_ids: list[uuid.UUID]


@dataclass(frozen=True)
class NewFact:
    tenant_id: str
    conversation_id: str
    user_id: str
    kind: str
    statement: str
    subject: str | None
    value: str | None
    confidence: float
    source_message_ids: list[uuid.UUID]
    stated_at: datetime
    provider: str
    embedding: list[float] | None
    model: str


def _embedding_columns(vector: list[float] | None, model: str) -> dict[str, Any]:
    """A derived row with its vector is ready at once; without, the embedding worker takes it."""
    if vector is None:
        return {"embedding_status": EmbeddingStatus.pending.value,
                "embedding_next_attempt_at": func.now()}
    return {
        "embedding": vector,
        "embedding_model": model,
        "embedding_status": EmbeddingStatus.ready.value,
        "embedded_at": func.now(),
        "embedding_next_attempt_at": None,
    }


class ConsolidationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- the queue -----------------------------------------------------------------------------

    async def claim(
        self, owner: uuid.UUID, limit: int, lease_seconds: float, tenant_id: str | None = None
    ) -> list[Job]:
        params: dict[str, Any] = {"owner": owner, "limit": limit, "lease_seconds": lease_seconds}
        tenant = ""
        if tenant_id is not None:
            tenant = "\n      AND tenant_id = :tenant_id"
            params["tenant_id"] = tenant_id
        statement = text(CLAIM_SQL.text.replace("{tenant}", tenant))
        result = await self.session.execute(statement, params)
        jobs = [
            Job(
                tenant_id=r.tenant_id, id=r.id, conversation_id=r.conversation_id,
                user_id=r.user_id, role=r.role, kind=r.kind, content=r.content,
                created_at=r.created_at, importance=r.importance,
                attempts=r.consolidation_attempts,
                readable=r.archived_at is None and bool(r.live),
            )
            for r in result
        ]
        return sorted(jobs, key=lambda job: (job.created_at, job.id))

    async def complete(self, owner: uuid.UUID, jobs: list[Job]) -> set[uuid.UUID]:
        """Mark the jobs the owner still leases done; the ids marked."""
        if not jobs:
            return set()
        result = await self.session.execute(
            COMPLETE_SQL,
            {"owner": owner, "tenant_ids": sorted({job.tenant_id for job in jobs}),
             "ids": [job.id for job in jobs]},
        )
        return {row.id for row in result}

    async def fail(
        self, owner: uuid.UUID, failures: list[Failure], max_attempts: int
    ) -> list[tuple[uuid.UUID, str]]:
        """Record failed attempts; (id, new status) of each row still held."""
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
        return [(row.id, row.consolidation_status) for row in result]

    async def release(self, owner: uuid.UUID) -> int:
        """Hand back every row this owner still leases."""
        result = await self.session.execute(RELEASE_SQL, {"owner": owner})
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def lock(self, key: str) -> None:
        await self.session.execute(LOCK_SQL, {"key": key})

    # --- facts ---------------------------------------------------------------------------------

    async def current_facts(
        self,
        tenant_id: str,
        user_id: str,
        *,
        vector: list[float] | None = None,
        model: str | None = None,
        limit: int = 500,
    ) -> list[KnownFact]:
        """The user's current facts and preferences; nearest to `vector` first when given."""
        params: dict[str, Any] = {"tenant_id": tenant_id, "user_id": user_id, "limit": limit}
        if vector is not None:
            sql = CURRENT_FACTS_SQL.format(
                similarity=SIMILARITY, unexpired=UNEXPIRED_SQL,
                order="similarity DESC NULLS LAST, created_at DESC",
            )
            statement = text(sql).bindparams(vector_param("vector"))
            params.update(vector=vector, model=model)
        else:
            sql = CURRENT_FACTS_SQL.format(
                similarity="NULL::float8", unexpired=UNEXPIRED_SQL, order="created_at DESC"
            )
            statement = text(sql)
        result = await self.session.execute(statement, params)
        return [
            KnownFact(
                id=row.id,
                statement=row.content,
                kind=row.kind,
                subject=(row.metadata or {}).get("subject"),
                value=(row.metadata or {}).get("value"),
                created_at=row.created_at,
                similarity=None if row.similarity is None else float(row.similarity),
            )
            for row in result
        ]

    async def insert_fact(self, fact: NewFact, *, superseded_by: uuid.UUID | None = None,
                          valid_until: datetime | None = None) -> uuid.UUID:
        """Store a fact (created_at: when its turn stated it); its id."""
        fact_id = new_id()
        metadata = {"subject": fact.subject, "value": fact.value, "extracted_by": fact.provider}
        await self.session.execute(
            MESSAGES.insert().values(
                tenant_id=fact.tenant_id,
                id=fact_id,
                conversation_id=fact.conversation_id,
                user_id=fact.user_id,
                role="system",
                kind=fact.kind,
                content=fact.statement,
                metadata={k: v for k, v in metadata.items() if v is not None},
                importance=0.8,
                created_at=fact.stated_at,
                source_message_ids=fact.source_message_ids,
                confidence=fact.confidence,
                superseded_by=superseded_by,
                valid_until=valid_until,
                consolidation_status=None,
                **_embedding_columns(fact.embedding, fact.model),
            )
        )
        return fact_id

    async def supersede(
        self, tenant_id: str, old_id: uuid.UUID, new_id: uuid.UUID, valid_until: datetime
    ) -> bool:
        """Mark a current fact replaced by `new_id` from `valid_until` on."""
        result = await self.session.execute(
            update(Message)
            .where(Message.tenant_id == tenant_id, Message.id == old_id,
                   Message.superseded_by.is_(None))
            .values(superseded_by=new_id, valid_until=valid_until)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def add_source(self, tenant_id: str, fact_id: uuid.UUID, turn_id: uuid.UUID) -> None:
        """A turn that repeats a known fact joins its provenance (once)."""
        await self.session.execute(
            update(MESSAGES)
            .where(
                MESSAGES.c.tenant_id == tenant_id,
                MESSAGES.c.id == fact_id,
                ~func.coalesce(MESSAGES.c.source_message_ids, []).contains([turn_id]),
            )
            .values(
                source_message_ids=func.array_append(
                    func.coalesce(MESSAGES.c.source_message_ids, []), turn_id
                )
            )
        )

    def _facts_select(self, tenant_id: str, user_id: str, include_superseded: bool) -> Select[Any]:
        statement = select(Message).where(
            Message.tenant_id == tenant_id,
            Message.user_id == user_id,
            Message.kind.in_(FACT_KINDS),
            Message.archived_at.is_(None),
            unexpired(),
        )
        if not include_superseded:
            statement = statement.where(Message.superseded_by.is_(None))
        return statement

    def facts_listing(
        self, tenant_id: str, user_id: str, *, include_superseded: bool, kind: str | None
    ) -> Select[Message]:
        """The user's facts, to page newest first in (created_at, id) order."""
        statement = self._facts_select(tenant_id, user_id, include_superseded)
        if kind is not None:
            statement = statement.where(Message.kind == kind)
        return statement

    # --- summaries -----------------------------------------------------------------------------

    async def current_summary(self, tenant_id: str, conversation_id: str) -> CurrentSummary | None:
        result = await self.session.execute(
            select(Message.id, Message.content, Message.covers_through, Message.source_message_ids)
            .where(
                Message.tenant_id == tenant_id,
                Message.conversation_id == conversation_id,
                Message.kind == Kind.summary.value,
                Message.superseded_by.is_(None),
                unexpired(),
            )
            .order_by(Message.created_at.desc(), Message.id.desc())
            .limit(1)
        )
        row = result.one_or_none()
        if row is None:
            return None
        return CurrentSummary(row.id, row.content, row.covers_through,
                              list(row.source_message_ids or []))

    async def turns_after(
        self, tenant_id: str, conversation_id: str, after: datetime | None
    ) -> int:
        """The conversation's readable turns newer than `after` (all of them for None)."""
        statement = select(func.count()).where(
            Message.tenant_id == tenant_id,
            Message.conversation_id == conversation_id,
            Message.kind == Kind.message.value,
            Message.archived_at.is_(None),
            unexpired(),
        )
        if after is not None:
            statement = statement.where(Message.created_at > after)
        return int((await self.session.execute(statement)).scalar_one())

    async def window(
        self, tenant_id: str, conversation_id: str, limit: int, model: str
    ) -> list[Turn]:
        """The conversation's last `limit` readable turns, oldest first, with their vectors of
        the current model."""
        result = await self.session.execute(
            WINDOW_SQL.columns(embedding=Vector()),
            {"tenant_id": tenant_id, "conversation_id": conversation_id, "limit": limit,
             "model": model},
        )
        turns = [
            Turn(
                id=row.id, role=row.role, content=row.content, created_at=row.created_at,
                importance=float(row.importance), user_id=row.user_id,
                embedding=_parse_vector(row.embedding),
            )
            for row in result
        ]
        turns.reverse()
        return turns

    async def write_summary(
        self,
        tenant_id: str,
        conversation_id: str,
        *,
        existing: uuid.UUID | None,
        content: str,
        user_id: str | None,
        covers_through: datetime,
        source_message_ids: list[uuid.UUID],
        provider: str,
        embedding: list[float] | None,
        model: str,
    ) -> uuid.UUID:
        """Replace the conversation's summary in place (same id), or store its first one."""
        values: dict[str, Any] = {
            "content": content,
            "user_id": user_id,
            "covers_through": covers_through,
            "source_message_ids": source_message_ids,
            "metadata": {"summarized_by": provider, "turns": len(source_message_ids)},
            "created_at": func.now(),
            "embedding_attempts": 0,
            "embedding_error": None,
            "embedding_lease_owner": None,
            "embedding_lease_expires_at": None,
            **_embedding_columns(embedding, model),
        }
        if embedding is None:
            values.update(embedding=None, embedding_model=None, embedded_at=None)
        if existing is not None:
            result = await self.session.execute(
                update(MESSAGES)
                .where(MESSAGES.c.tenant_id == tenant_id, MESSAGES.c.id == existing)
                .values(**values)
                .returning(MESSAGES.c.id)
            )
            if result.first() is not None:
                return existing
        summary_id = new_id()
        await self.session.execute(
            MESSAGES.insert().values(
                tenant_id=tenant_id,
                id=summary_id,
                conversation_id=conversation_id,
                role="system",
                kind=Kind.summary.value,
                importance=0.6,
                consolidation_status=None,
                **values,
            )
        )
        return summary_id


def _parse_vector(value: Any) -> list[float] | None:
    if value is None:
        return None
    return [float(x) for x in value]

