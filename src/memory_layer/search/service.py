"""Retrieval: embed the query once, gather vector and keyword candidates in SQL, rank, diversify."""

from __future__ import annotations

import dataclasses
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.audit import service as audit
from memory_layer.config import Settings
from memory_layer.embeddings.providers.base import EmbeddingError, EmbeddingProvider
from memory_layer.embeddings.service import call_provider
from memory_layer.kit.cache import SearchCache, TenantSizes, digest
from memory_layer.kit.db.replicas import read_lsn_of, required_lsn_of
from memory_layer.kit.db.vectors import check_vector
from memory_layer.kit.errors import DomainError, NotFound, ServiceUnavailable
from memory_layer.kit.observability.metrics import Metrics
from memory_layer.models.message import EmbeddingStatus
from memory_layer.search.answers import expand_answers, questions_among
from memory_layer.search.context import add_neighbours, boost_sessions, strong_hits
from memory_layer.search.cues import named_day, named_period, query_words
from memory_layer.search.diversity import mmr_order
from memory_layer.search.plan import ScoredRow, SearchFilters, SearchMode, SearchPlan
from memory_layer.search.repository import SearchRepository, sampled_statistics
from memory_layer.search.scoring import ScoreWeights


@dataclass(frozen=True)
class SearchQuery:
    """What a caller asks for (the HTTP schemas, the evaluation harness or the CLI)."""

    text: str
    top_k: int = 5
    mode: SearchMode = SearchMode.hybrid
    filters: SearchFilters = dataclasses.field(default_factory=SearchFilters)
    min_score: float | None = None
    diversity: float = 0.0
    # A vector of the client's own instead of the text (then `text` is "" and the mode vector),
    # compared with the stored vectors of `embedding_model` (None: the service's model).
    vector: list[float] | None = None
    embedding_model: str | None = None


@dataclass(frozen=True)
class SearchOutcome:
    rows: list[ScoredRow]
    mode: SearchMode
    degraded: str | None


async def _query_vector(
    query: SearchQuery, embedder: EmbeddingProvider, metrics: Metrics
) -> tuple[list[float] | None, SearchMode, str | None]:
    if query.mode is SearchMode.keyword:
        return None, SearchMode.keyword, None
    if query.vector is not None:
        # The client's vector: no model call, vector-only (there is no text for keywords).
        return query.vector, SearchMode.vector, None
    try:
        vector = await call_provider(embedder.embed_query(query.text), embedder, metrics)
    except EmbeddingError as exc:
        if query.mode is SearchMode.hybrid:
            # The provider is down or rate-limited: answer from the keyword index rather than not
            # at all, and say so.
            return None, SearchMode.keyword, f"embedding_failed: {exc}"
        raise ServiceUnavailable(
            f"the embedding provider failed, nothing was searched: {exc}", code="embedding_failed"
        ) from exc
    return vector, query.mode, None


_CACHED_ROWS = TypeAdapter(list[ScoredRow])


def _request_key(query: SearchQuery, settings: Settings, embedder: EmbeddingProvider) -> str:
    """Everything the rows depend on but the tenant's data: the request, the model, the scoring."""
    return digest(
        embedder.model_name,
        embedder.dimensions,
        query,
        ScoreWeights.from_settings(settings),
        settings.search_fusion,
        settings.search_keyword_weight,
        settings.search_rrf_k,
        settings.search_candidate_multiplier,
        settings.search_keyword_scoring,
        settings.search_neighbours,
        settings.search_neighbour_decay,
        settings.search_session_boost,
        settings.search_session_gap_minutes,
    )


async def search_memory(
    session: AsyncSession,
    tenant_id: str,
    query: SearchQuery,
    *,
    settings: Settings,
    embedder: EmbeddingProvider,
    metrics: Metrics,
    tenant_sizes: TenantSizes | None = None,
    cache: SearchCache | None = None,
) -> SearchOutcome:
    """The tenant's most relevant messages for the query, best first; from the search cache when
    the tenant has not been written since the same search was answered. Counted in the search
    metrics (mode, results, cached, degraded)."""
    outcome, cached = await _cached_search(
        session, tenant_id, query, settings, embedder, metrics, tenant_sizes, cache
    )
    metrics.observe_search(
        outcome.mode.value, len(outcome.rows), cached=cached, degraded=outcome.degraded
    )
    # The audit log (audit_level `all`) keeps the query's length, never its text.
    audit.note(query_chars=len(query.text), results=len(outcome.rows))
    return outcome


async def _cached_search(
    session: AsyncSession,
    tenant_id: str,
    query: SearchQuery,
    settings: Settings,
    embedder: EmbeddingProvider,
    metrics: Metrics,
    tenant_sizes: TenantSizes | None,
    cache: SearchCache | None,
) -> tuple[SearchOutcome, bool]:
    """The outcome, and whether it came from the cache."""
    if cache is None:
        return (
            await _search(session, tenant_id, query, settings, embedder, metrics, tenant_sizes),
            False,
        )
    # Read before the database: a write that commits meanwhile replaces this generation, so the
    # result computed below can never be served after that write's 2xx.
    generation = await cache.generation(tenant_id)
    if generation is None:  # Redis unreachable: uncached
        return (
            await _search(session, tenant_id, query, settings, embedder, metrics, tenant_sizes),
            False,
        )
    request = _request_key(query, settings, embedder)
    cached = await cache.get(tenant_id, generation, request, floor=required_lsn_of(session))
    if cached is not None:
        rows = _CACHED_ROWS.validate_json(cached)
        return SearchOutcome(rows=rows, mode=query.mode, degraded=None), True
    outcome = await _search(session, tenant_id, query, settings, embedder, metrics, tenant_sizes)
    # Neither a degraded answer nor one holding an encrypted channel's plaintext is kept.
    if outcome.degraded is None and not any(row.ciphertext for row in outcome.rows):
        rows = [dataclasses.replace(row, embedding=None) for row in outcome.rows]
        # A message expires in the middle of the cache's TTL: the entry must die with it.
        expiries = [row.expires_at for row in rows if row.expires_at is not None]
        lifetime = None
        if expiries:
            lifetime = math.floor((min(expiries) - datetime.now(UTC)).total_seconds())
        if lifetime is None or lifetime > 0:
            await cache.put(
                tenant_id, generation, request, _CACHED_ROWS.dump_json(rows), max_seconds=lifetime,
                read_lsn=read_lsn_of(session),
            )
    return outcome, False


# A partition's name as the catalog prints it (`messages_p03`, or schema-qualified): spliced into
# the search statement, so nothing else is taken.
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")


class TenantExtent(NamedTuple):
    """What chooses how a tenant is searched, kept a minute per process (app.state.tenant_sizes)."""

    rows: int  # its messages, counted only as far as `search_exactly` needs to tell
    partition_rows: int  # PostgreSQL's estimate of its partition's rows
    table: str  # the partition that holds its rows; `messages` before it has any


async def tenant_extent(
    repository: SearchRepository, tenant_id: str, settings: Settings
) -> TenantExtent:
    found = await repository.partition(tenant_id)
    table, partition_rows = found if found is not None else ("messages", 0)
    if not _TABLE_NAME.fullmatch(table):  # pragma: no cover - the catalog's own names
        table = "messages"
    cap = max(
        settings.search_exact_max_rows,
        math.ceil(settings.search_exact_min_share * partition_rows),
    )
    return TenantExtent(await repository.tenant_size(tenant_id, cap), partition_rows, table)


def search_exactly(rows: int, partition_rows: int, settings: Settings) -> bool:
    """Whether a tenant's vectors are all compared rather than found through the HNSW graph of
    its partition: when it is small (MEMORY_SEARCH_EXACT_MAX_ROWS), or when it holds so small a
    share of its partition (MEMORY_SEARCH_EXACT_MIN_SHARE) that the graph would hand back many
    rows of other tenants for each one of its own (about 1 / share)."""
    if rows <= settings.search_exact_max_rows:
        return True
    return rows < settings.search_exact_min_share * partition_rows


async def _extent(
    repository: SearchRepository,
    tenant_id: str,
    settings: Settings,
    tenant_sizes: TenantSizes | None,
) -> TenantExtent:
    """The tenant's extent, from the app's minute-long cache when it holds it."""
    cached = tenant_sizes.get(tenant_id) if tenant_sizes is not None else None
    if cached is not None:
        return TenantExtent(*cached)
    extent = await tenant_extent(repository, tenant_id, settings)
    if tenant_sizes is not None:
        tenant_sizes[tenant_id] = extent
    return extent


async def _search(
    session: AsyncSession,
    tenant_id: str,
    query: SearchQuery,
    settings: Settings,
    embedder: EmbeddingProvider,
    metrics: Metrics,
    tenant_sizes: TenantSizes | None,
) -> SearchOutcome:
    if query.vector is not None:
        check_vector(query.vector, settings.embedding_dimensions, field_name="vector")
    # The model first, then the database: no connection waits in a transaction on the provider.
    vector, mode, degraded = await _query_vector(query, embedder, metrics)
    repository = SearchRepository(session)
    extent = await _extent(repository, tenant_id, settings, tenant_sizes)
    exact = (
        mode is not SearchMode.keyword
        and settings.search_exact_max_rows > 0
        and search_exactly(extent.rows, extent.partition_rows, settings)
    )
    candidate_pool = max(query.top_k * settings.search_candidate_multiplier, 20)
    diversify = query.diversity > 0
    sessions = settings.search_session_boost > 0
    plan = SearchPlan(
        tenant_id=tenant_id,
        query_text=query.text,
        query_vector=vector,
        mode=mode,
        fusion=settings.search_fusion,
        model=query.embedding_model or embedder.model_name,
        # Diversity and the session boost re-rank a longer list, so they need more than top_k.
        limit=candidate_pool if diversify or sessions else query.top_k,
        candidate_pool=candidate_pool,
        filters=query.filters,
        weights=ScoreWeights.from_settings(settings),
        rrf_k=settings.search_rrf_k,
        keyword_weight=settings.search_keyword_weight,
        min_score=query.min_score,
        with_embedding=diversify,
        exact=exact,
        table=extent.table,
        period=named_period(query.text) if settings.search_time_boost > 0 else None,
        day=named_day(query.text) if settings.search_time_boost > 0 else None,
        time_boost=settings.search_time_boost,
        words=tuple(query_words(query.text)) if settings.search_speaker_boost > 0 else (),
        speaker_boost=settings.search_speaker_boost,
        keyword_scoring=settings.search_keyword_scoring,
        sampled_statistics=sampled_statistics(extent.rows),
        context_vectors=settings.context_vectors,
    )
    rows = await repository.search(plan)
    if sessions:
        rows = boost_sessions(
            rows, boost=settings.search_session_boost,
            gap=timedelta(minutes=settings.search_session_gap_minutes),
            w_relevance=plan.weights.relevance / plan.weights.total,
        )
    if settings.search_neighbours > 0:
        neighbours = await repository.neighbour_turns(
            tenant_id, strong_hits(rows, settings.search_neighbours), query.filters, extent.table
        )
        rows = add_neighbours(rows, neighbours, decay=settings.search_neighbour_decay)
        if query.min_score is not None:
            rows = [row for row in rows if row.score >= query.min_score]
    if not diversify:
        rows = rows[: query.top_k]
    else:
        order = mmr_order(
            [row.score for row in rows],
            [row.embedding for row in rows],
            lambda_=1.0 - query.diversity,
            k=query.top_k,
        )
        rows = [dataclasses.replace(rows[i], mmr_rank=position + 1) for position, i in enumerate(order)]
    if settings.search_answer_expansion:
        answers = await repository.next_turns(
            tenant_id, questions_among(rows), query.filters, extent.table
        )
        rows = expand_answers(rows, answers, query.top_k)
    return SearchOutcome(rows=rows, mode=mode, degraded=degraded)


class EmbeddingNotReady(DomainError):
    status_code = 409
    code = "embedding_not_ready"


async def related_messages(
    session: AsyncSession,
    tenant_id: str,
    message_id: uuid.UUID,
    *,
    top_k: int,
    filters: SearchFilters,
    settings: Settings,
    embedder: EmbeddingProvider,
    tenant_sizes: TenantSizes | None = None,
) -> list[ScoredRow]:
    """The messages nearest to a stored one: a vector search whose query is the message's own
    vector (same tenant, same filters and scoring as search), the message itself left out. 404
    without such a message; 409 `embedding_not_ready` while it has no vector of the current model."""
    repository = SearchRepository(session)
    stored = await repository.stored_vector(tenant_id, message_id)
    if stored is None:
        raise NotFound(f"no message {message_id} in tenant {tenant_id!r}", code="message_not_found")
    status, model, vector = stored
    if status != EmbeddingStatus.ready.value or model != embedder.model_name or vector is None:
        raise EmbeddingNotReady(
            {"message": f"message {message_id} has no vector of {embedder.model_name} yet "
                        f"(embedding_status {status}); retry once it is ready",
             "embedding_status": status}
        )
    extent = await _extent(repository, tenant_id, settings, tenant_sizes)
    limit = top_k + 1  # the message itself is usually its own nearest neighbour
    plan = SearchPlan(
        tenant_id=tenant_id,
        query_text="",
        query_vector=vector,
        mode=SearchMode.vector,
        fusion=settings.search_fusion,
        model=embedder.model_name,
        limit=limit,
        candidate_pool=max(limit * settings.search_candidate_multiplier, 20),
        filters=filters,
        weights=ScoreWeights.from_settings(settings),
        rrf_k=settings.search_rrf_k,
        keyword_weight=settings.search_keyword_weight,
        exact=settings.search_exact_max_rows > 0
        and search_exactly(extent.rows, extent.partition_rows, settings),
        table=extent.table,
    )
    rows = await repository.search(plan)
    return [row for row in rows if row.id != message_id][:top_k]
