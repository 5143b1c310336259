"""Consolidation: the facts and summaries the service distils from conversations itself.

Called by the worker (consolidation/worker.py) for every new turn, and by the routes:

    store_facts(...)             a user turn's facts, reconciled against the user's current ones
    summarize_conversation(...)  make (or replace) a conversation's one current summary
    list_user_facts(...)         GET /v1/users/{user_id}/facts: the user's profile
    request_summary(...)         POST /v1/conversations/{id}/summarize

Provider calls (the language model, the embedder) happen outside any transaction: a session is
opened to read, closed, the provider is asked, and a short transaction writes. Writes that must not
race (a user's facts, a conversation's summary) take a transaction-scoped advisory lock and read
again under it.

Reconciliation, as mem0 does it: a new fact is compared with the user's current facts (those
sharing its subject, and the nearest ones by search). A near-duplicate is not stored again (its
turn is added to the existing fact's provenance); a new value for a subject the user already has
supersedes the old fact, which keeps `superseded_by` and `valid_until` (the time the new value was
stated) and leaves default reads. With an LLM provider the model decides add / update / none on
the candidates search returns; with `extractive`, or when the model names a fact that is no longer
current, the rules of consolidation/rules.py decide. A turn older than the fact it would replace
changes nothing (a retried turn cannot bring an old value back).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from memory_layer.config import Settings
from memory_layer.consolidation.providers.base import (
    Action,
    Decision,
    FactDraft,
    KnownFact,
    LanguageError,
    LanguageProvider,
    Turn,
)
from memory_layer.consolidation.repository import (
    ConsolidationRepository,
    CurrentSummary,
    NewFact,
)
from memory_layer.consolidation.rules import decide_by_rules
from memory_layer.embeddings.providers.base import EmbeddingError, EmbeddingProvider
from memory_layer.kit.cache import note_write, publish_writes
from memory_layer.kit.errors import Conflict, NotFound, ServiceUnavailable
from memory_layer.kit.observability.metrics import Metrics
from memory_layer.kit.pagination import CursorCodec, Keyset, Page, PageRequest, Scope, SortOrder, paginate
from memory_layer.models.message import Kind, Message
from memory_layer.policies.service import load_policy
from memory_layer.search.plan import SearchFilters, SearchMode
from memory_layer.search.service import SearchQuery, search_memory

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Distillers:
    """What consolidation calls: the language provider, the embedder, the settings."""

    provider: LanguageProvider
    embedder: EmbeddingProvider
    settings: Settings
    metrics: Metrics


@dataclass(frozen=True)
class FactOutcome:
    """What became of one extracted fact."""

    action: Action
    fact_id: uuid.UUID | None
    replaced: uuid.UUID | None = None


@dataclass(frozen=True)
class SummaryOutcome:
    id: uuid.UUID
    content: str
    covers_through: datetime
    source_message_ids: list[uuid.UUID]
    updated: bool  # false: the current summary already covered every turn


async def _vectors(embedder: EmbeddingProvider, texts: list[str]) -> list[list[float] | None]:
    """Vectors for new derived rows; on a provider failure none (the embedding worker retries)."""
    if not texts:
        return []
    try:
        vectors = await embedder.embed_documents(texts)
    except EmbeddingError as exc:
        logger.info("derived memories stored unembedded for the worker: %s", exc)
        return [None] * len(texts)
    if len(vectors) != len(texts):
        return [None] * len(texts)
    return list(vectors)


def _known(row: object) -> KnownFact:
    metadata = getattr(row, "metadata", None) or {}
    return KnownFact(
        id=getattr(row, "id"),  # noqa: B009 - ScoredRow and Message alike
        statement=getattr(row, "content"),  # noqa: B009
        kind=getattr(row, "kind"),  # noqa: B009
        subject=metadata.get("subject"),
        value=metadata.get("value"),
        created_at=getattr(row, "created_at"),  # noqa: B009
        similarity=getattr(row, "similarity", None),
    )


async def search_candidates(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant_id: str,
    user_id: str,
    draft: FactDraft,
    distillers: Distillers,
) -> list[KnownFact]:
    """The user's current facts a model is shown for a new one: what the memory search finds for
    its statement among the user's facts and preferences (hybrid, current only), best first, and
    any current fact sharing its subject."""
    settings = distillers.settings
    found: list[tuple[float, KnownFact]] = []
    async with sessionmaker() as session:
        for kind in (Kind.fact, Kind.preference):
            outcome = await search_memory(
                session,
                tenant_id,
                SearchQuery(
                    text=draft.statement,
                    top_k=settings.fact_candidates,
                    mode=SearchMode.hybrid,
                    filters=SearchFilters(user_id=user_id, kind=kind.value),
                ),
                settings=settings,
                embedder=distillers.embedder,
                metrics=distillers.metrics,
            )
            found.extend((row.score, _known(row)) for row in outcome.rows)
        same_subject: list[KnownFact] = []
        if draft.subject is not None:
            current = await ConsolidationRepository(session).current_facts(tenant_id, user_id)
            same_subject = [fact for fact in current if fact.subject == draft.subject]
    found.sort(key=lambda pair: -pair[0])
    candidates: list[KnownFact] = []
    for fact in [*same_subject, *(fact for _, fact in found)]:
        if all(fact.id != known.id for known in candidates):
            candidates.append(fact)
    return candidates[: settings.fact_candidates + len(same_subject)]


async def _reconcile(
    repository: ConsolidationRepository,
    turn: Turn,
    conversation_id: str,
    user_id: str,
    tenant_id: str,
    draft: FactDraft,
    vector: list[float] | None,
    proposed: Decision | None,
    distillers: Distillers,
) -> FactOutcome:
    """Apply one draft under the user's lock: the model's decision if it still holds, else the
    rules'."""
    settings = distillers.settings
    current = await repository.current_facts(
        tenant_id, user_id, vector=vector, model=distillers.embedder.model_name
    )
    by_id = {fact.id: fact for fact in current}
    decision = proposed
    if decision is None or (
        decision.action is not Action.add and (decision.target is None or decision.target not in by_id)
    ):
        decision = decide_by_rules(draft, current, settings.fact_duplicate_similarity)
    if decision.action is Action.none:
        if decision.target is not None:
            await repository.add_source(tenant_id, decision.target, turn.id)
        return FactOutcome(Action.none, decision.target)
    new = NewFact(
        tenant_id=tenant_id,
        conversation_id=conversation_id,
        user_id=user_id,
        kind=draft.kind,
        statement=draft.statement,
        subject=draft.subject,
        value=draft.value,
        confidence=max(0.0, min(1.0, draft.confidence)),
        source_message_ids=[turn.id],
        stated_at=turn.created_at,
        provider=distillers.provider.name,
        embedding=vector,
        model=distillers.embedder.model_name,
    )
    if decision.action is Action.update:
        assert decision.target is not None
        old = by_id[decision.target]
        if old.created_at >= turn.created_at:
            # Stated before the value it would replace (a turn retried late): nothing changes.
            return FactOutcome(Action.none, old.id)
        fact_id = await repository.insert_fact(new)
        await repository.supersede(tenant_id, old.id, fact_id, turn.created_at)
        return FactOutcome(Action.update, fact_id, replaced=old.id)
    fact_id = await repository.insert_fact(new)
    return FactOutcome(Action.add, fact_id)


@dataclass(frozen=True)
class Stated:
    """A turn of one user, and the facts found in it."""

    turn: Turn
    user_id: str
    drafts: list[FactDraft]


async def store_facts(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant_id: str,
    conversation_id: str,
    stated: list[Stated],
    distillers: Distillers,
) -> list[FactOutcome]:
    """Reconcile the drafts of a conversation's turns (in turn order) with their users' current
    facts and store what is new. With the rules, one embedding call and one transaction serve
    them all; a model decides on what search finds, so each turn is written before the next
    one's candidates are searched."""
    if not distillers.provider.uses_model:
        return await _store(sessionmaker, tenant_id, conversation_id, stated, distillers)
    outcomes: list[FactOutcome] = []
    for item in stated:
        outcomes += await _store(sessionmaker, tenant_id, conversation_id, [item], distillers)
    return outcomes


async def _store(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant_id: str,
    conversation_id: str,
    stated: list[Stated],
    distillers: Distillers,
) -> list[FactOutcome]:
    pairs = [(item, draft) for item in stated for draft in item.drafts]
    if not pairs:
        return []
    vectors = await _vectors(distillers.embedder, [draft.statement for _, draft in pairs])
    proposals: list[Decision | None] = []
    for item, draft in pairs:
        if distillers.provider.uses_model:
            candidates = await search_candidates(
                sessionmaker, tenant_id, item.user_id, draft, distillers
            )
            proposals.append(await distillers.provider.decide(draft, candidates))
        else:
            proposals.append(None)
    outcomes: list[FactOutcome] = []
    async with sessionmaker.begin() as session:
        repository = ConsolidationRepository(session)
        # In one order everywhere, so two workers never wait for each other's second lock.
        for user_id in sorted({item.user_id for item in stated}):
            await repository.lock(f"facts:{tenant_id}:{user_id}")
        for (item, draft), vector, proposed in zip(pairs, vectors, proposals, strict=True):
            outcomes.append(
                await _reconcile(repository, item.turn, conversation_id, item.user_id, tenant_id,
                                 draft, vector, proposed, distillers)
            )
        if any(outcome.action is not Action.none for outcome in outcomes):
            note_write(session, tenant_id)
    await publish_writes(session)
    for outcome in outcomes:
        distillers.metrics.consolidation_facts.labels(action=outcome.action.value).inc()
    return outcomes


def _single_user(turns: list[Turn]) -> str | None:
    users = {turn.user_id for turn in turns if turn.user_id is not None}
    return users.pop() if len(users) == 1 else None


def _merged_ids(previous: CurrentSummary | None, turns: list[Turn]) -> list[uuid.UUID]:
    ids = list(previous.source_message_ids) if previous is not None else []
    seen = set(ids)
    for turn in turns:
        if turn.id not in seen:
            seen.add(turn.id)
            ids.append(turn.id)
    return ids


async def summarize_conversation(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant_id: str,
    conversation_id: str,
    distillers: Distillers,
    *,
    force: bool = False,
) -> SummaryOutcome | None:
    """Make the conversation's summary again when MEMORY_SUMMARY_EVERY_TURNS new turns arrived
    since the current one (any new turn with `force`); replaces the current summary in place.
    None when no summary is due (or the conversation has no turns)."""
    settings = distillers.settings
    async with sessionmaker() as session:
        repository = ConsolidationRepository(session)
        current = await repository.current_summary(tenant_id, conversation_id)
        after = current.covers_through if current is not None else None
        new_turns = await repository.turns_after(tenant_id, conversation_id, after)
        threshold = 1 if force else settings.summary_every_turns
        if new_turns < threshold:
            if force and current is not None and current.covers_through is not None:
                return SummaryOutcome(current.id, current.content, current.covers_through,
                                      current.source_message_ids, updated=False)
            return None
        window = await repository.window(
            tenant_id, conversation_id, settings.summary_window_turns,
            distillers.embedder.model_name,
        )
    if not window:
        return None
    provider = distillers.provider
    if provider.uses_model and current is not None and after is not None:
        # A model carries the previous summary forward and reads only what came after it.
        shown = [turn for turn in window if turn.created_at > after] or window[-1:]
        content = await provider.summarize(current.content, shown, settings.summary_turns)
    else:
        content = await provider.summarize(None, window, settings.summary_turns)
    content = content.strip()
    if not content:
        return None
    [vector] = await _vectors(distillers.embedder, [content])
    covers_through = window[-1].created_at
    async with sessionmaker.begin() as session:
        repository = ConsolidationRepository(session)
        await repository.lock(f"summary:{tenant_id}:{conversation_id}")
        latest = await repository.current_summary(tenant_id, conversation_id)
        if (
            latest is not None
            and latest.covers_through is not None
            and latest.covers_through >= covers_through
        ):
            # Another worker summarised the same turns meanwhile: keep its summary.
            return SummaryOutcome(latest.id, latest.content, latest.covers_through,
                                  latest.source_message_ids, updated=False)
        ids = _merged_ids(latest, window)
        summary_id = await repository.write_summary(
            tenant_id,
            conversation_id,
            existing=latest.id if latest is not None else None,
            content=content,
            user_id=_single_user(window),
            covers_through=covers_through,
            source_message_ids=ids,
            provider=provider.name,
            embedding=vector,
            model=distillers.embedder.model_name,
        )
        note_write(session, tenant_id)
    await publish_writes(session)
    distillers.metrics.consolidation_summaries.inc()
    return SummaryOutcome(summary_id, content, covers_through, ids, updated=True)


class SummariesDisabled(Conflict):
    code = "summaries_disabled"


async def request_summary(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant_id: str,
    conversation_id: str,
    distillers: Distillers,
) -> SummaryOutcome:
    """Summarise the conversation now (every turn up to the newest), unless the current summary
    already covers them; 409 when the tenant's policy turns summaries off, 404 for a
    conversation without turns."""
    policy = await load_policy(sessionmaker, tenant_id, distillers.settings)
    if not policy.summarize:
        raise SummariesDisabled(
            f"summaries are turned off for tenant {tenant_id!r} (its policy's `summarize`)"
        )
    try:
        outcome = await summarize_conversation(
            sessionmaker, tenant_id, conversation_id, distillers, force=True
        )
    except LanguageError as exc:
        distillers.metrics.consolidation_errors.labels(
            provider=distillers.provider.name, kind=exc.kind
        ).inc()
        raise ServiceUnavailable(
            f"the language provider failed, nothing was changed: {exc}",
            code="language_provider_failed",
        ) from exc
    if outcome is None:
        raise NotFound(
            f"no conversation {conversation_id!r} in tenant {tenant_id!r}",
            code="conversation_not_found",
        )
    return outcome


class FactPosition(BaseModel):
    """Where a page of facts ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    created_at: AwareDatetime
    id: uuid.UUID


FACTS = Keyset(FactPosition, {"created_at": Message.created_at, "id": Message.id}, order=SortOrder.desc)


@dataclass(frozen=True)
class FactQuery:
    include_superseded: bool = False
    kind: Kind | None = None
    limit: int = 100
    cursor: str | None = None


async def list_user_facts(
    session: AsyncSession,
    tenant_id: str,
    user_id: str,
    query: FactQuery,
    *,
    cursors: CursorCodec,
) -> Page[Message]:
    """The user's profile: their current facts and preferences, newest first (superseded ones
    too with `include_superseded`)."""
    scope: Scope = {
        "tenant_id": tenant_id,
        "listing": "user_facts",
        "user_id": user_id,
        "include_superseded": query.include_superseded,
        "kind": query.kind.value if query.kind is not None else None,
    }
    return await paginate(
        session,
        ConsolidationRepository(session).facts_listing(
            tenant_id,
            user_id,
            include_superseded=query.include_superseded,
            kind=query.kind.value if query.kind is not None else None,
        ),
        pagination=PageRequest(query.limit, query.cursor),
        keyset=FACTS,
        codec=cursors,
        scope=scope,
    )
