"""SQL of search: candidates from HNSW and full text, fused and scored in one statement."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from functools import lru_cache
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import Float, String, TextClause, TextualSelect, text
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.config import ContextVectors, KeywordScoring
from memory_layer.kit.crypto import EncryptionKeyRing, keyring_of, open_message
from memory_layer.kit.db.vectors import vector_param
from memory_layer.models.message import CURRENT_SQL, UNEXPIRED_SQL, EmbeddingStatus
from memory_layer.search.plan import ScoredRow, SearchFilters, SearchMode, SearchPlan
from memory_layer.search.scoring import (
    FEEDBACK_SQL,
    FRESH_SINCE_SQL,
    RECENCY_SQL,
    SCORED_SQL,
    relevance_sql,
)

READY = f"'{EmbeddingStatus.ready.value}'"

# The search is plain SQL text: building an expression tree per request cost more than the query.
# Only fixed fragments are ever spliced in ({filters}, the mode's CTEs, and {table}: `messages`,
# or the partition of it that holds the tenant, named by the catalog); every value travels as a
# bind parameter.
#
# Candidates come from two places, each limited to :candidate_pool rows of the tenant:
#   vector_hits   nearest neighbours through the HNSW index (rows embedded by the current model)
#   keyword_hits  full-text matches through the GIN index, ranked by ts_rank_cd (every row, so a
#                 message whose embedding is still pending is already found)
# and are fused by reciprocal rank fusion: fused = sum over lists of 1 / (rrf_k + rank).
VECTOR_HITS = f"""
vector_hits AS (
    SELECT tenant_id, id, distance,
           row_number() OVER (ORDER BY distance, id) AS vector_rank
    FROM (
        SELECT tenant_id, id, embedding <=> CAST(:query_vector AS vector) AS distance
        FROM {{table}}
        WHERE tenant_id = :tenant_id
          AND embedding_status = {READY}
          AND embedding_model = :model{{filters}}
        ORDER BY {{vector_order}}
        LIMIT :candidate_pool
    ) nearest
)"""

# With context vectors (MEMORY_CONTEXT_VECTORS) a message's distance to the query is the lesser of
# its two vectors' distances (max: the better similarity) or their mean; a message without a
# context vector yet counts its own vector twice. Candidates come from both HNSW graphs (each
# walked as the single-vector search walks its graph), merged, and the nearest :candidate_pool
# kept; the exact form compares the combined distance of every one of the tenant's rows.
CONTEXT_DISTANCE = {
    ContextVectors.max: (
        "least({p}embedding <=> CAST(:query_vector AS vector), "
        "{p}context_embedding <=> CAST(:query_vector AS vector))"
    ),
    ContextVectors.mean: (
        "(({p}embedding <=> CAST(:query_vector AS vector)) + coalesce("
        "{p}context_embedding <=> CAST(:query_vector AS vector), "
        "{p}embedding <=> CAST(:query_vector AS vector))) / 2.0"
    ),
}
CONTEXT_SIDE = f"""
        (SELECT tenant_id, id, {{distance}} AS distance
         FROM {{table}}
         WHERE tenant_id = :tenant_id
           AND embedding_status = {READY}
           AND embedding_model = :model{{filters}}
         ORDER BY {{column}} <=> CAST(:query_vector AS vector)
         LIMIT :candidate_pool)"""
CONTEXT_VECTOR_HITS = """
vector_hits AS (
    SELECT tenant_id, id, distance,
           row_number() OVER (ORDER BY distance, id) AS vector_rank
    FROM (
        SELECT tenant_id, id, min(distance) AS distance
        FROM ({own}
         UNION ALL{context}
        ) both_graphs
        GROUP BY tenant_id, id
        ORDER BY distance, id
        LIMIT :candidate_pool
    ) nearest
)"""


def _vector_hits(plan: SearchPlan, where: str) -> str:
    if plan.context_vectors is ContextVectors.off:
        return VECTOR_HITS.format(
            filters=where, vector_order=EXACT_ORDER if plan.exact else INDEX_ORDER,
            table=plan.table,
        )
    distance = CONTEXT_DISTANCE[plan.context_vectors].format(p="")
    if plan.exact:
        return VECTOR_HITS.replace(INDEX_ORDER + " AS distance", distance + " AS distance").format(
            filters=where, vector_order=distance, table=plan.table
        )
    side = {"distance": distance, "table": plan.table, "filters": where}
    return CONTEXT_VECTOR_HITS.format(
        own=CONTEXT_SIDE.format(column="embedding", **side),
        context=CONTEXT_SIDE.format(column="context_embedding", **side),
    )


# The HNSW index serves `ORDER BY embedding <=> q` only; the `+ 0` form makes PostgreSQL compare
# every one of the tenant's vectors (through the tenant index): exact, and for a small tenant
# faster than walking a graph built over everyone's rows.
INDEX_ORDER = "embedding <=> CAST(:query_vector AS vector)"
EXACT_ORDER = "(embedding <=> CAST(:query_vector AS vector)) + 0"

# A side the mode does not use: the same columns, no rows.
NO_HITS = """
{side}_hits AS (
    SELECT NULL::varchar AS tenant_id, NULL::uuid AS id, NULL::float8 AS {score},
           NULL::bigint AS {side}_rank
    WHERE false
)"""
NO_VECTOR_HITS = NO_HITS.format(side="vector", score="distance")
NO_KEYWORD_HITS = NO_HITS.format(side="keyword", score="keyword_score")

KEYWORD_HITS = """
keyword_hits AS (
    SELECT tenant_id, id, keyword_score,
           row_number() OVER (ORDER BY keyword_score DESC, id) AS keyword_rank
    FROM (
        SELECT tenant_id, id,
               (ts_rank_cd(content_tsv, tsq, 32)
                + CASE WHEN content_tsv @@ all_terms THEN 1.0 ELSE 0.0 END) / 2.0 AS keyword_score
        FROM {table}, {tsquery} AS tsq, websearch_to_tsquery('english', :query_text) AS all_terms
        WHERE tenant_id = :tenant_id
          AND content_tsv @@ tsq{filters}
        ORDER BY keyword_score DESC
        LIMIT :candidate_pool
    ) matched
)"""

# BM25 over the tenant's rows, inside PostgreSQL (MEMORY_SEARCH_KEYWORD_SCORING=bm25), at a cost
# bounded by constants rather than by how many of the tenant's messages hold the query's words:
#   statistics  for a tenant of up to :stat_sample rows, exact: N = the rows the search may
#               return (the tenant's, within the filters), df(t) = how many of them hold lexeme t,
#               each counted through the GIN index; for a larger tenant, from the newest
#               :stat_sample of those rows, read through the (tenant, created_at) index (a word's
#               share of recent messages estimates its share of all)
#   idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
#   candidates  rows holding a query lexeme, through the GIN index, at most :match_cap of them.
#               In a scope larger than the sample, only informative lexemes (held by at most
#               :common_share of the sample) bring candidates; when every lexeme is common ("what
#               did you say"), rows holding all of them do (websearch semantics). A scope the
#               sample holds whole is searched as before: every lexeme, exact statistics
#   tf(t,d)     = occurrences of the lexeme in the message (positions in its tsvector), saturated:
#               tf (k1 + 1) / (tf + k1 (1 - b + b |d| / avgdl)), |d| its distinct lexemes, avgdl
#               their mean over the candidates
#   bm25        = sum over query lexemes of idf(t) tf-part / sum of idf(t) (k1 + 1)
# so a message holding every query lexeme many times scores near 1, and a word every message
# shares ("say", a speaker's name in a two-person chat) weighs almost nothing beside a rare one and
# brings in no candidates of its own: a row holding only common words would score near 0 here, and
# the vector half still finds it when its meaning is close.
# The keyword score is half that and half "every query term matched" (websearch semantics, as
# with cover density): without that half a look-alike code with a closer vector beat the exact
# one in hybrid search. A row holding every term holds the informative ones, so it is always a
# candidate (up to :match_cap).
# The query's lexemes are to_tsvector('english', query)'s: stemmed as the stored column is, stop
# words ("what", "when", "did") gone.
BM25_K1 = 1.2
BM25_B = 0.75
BM25_STAT_SAMPLE = 1_000
BM25_COMMON_SHARE = 0.25
BM25_MATCH_CAP = 1_000
def sampled_statistics(tenant_rows: int) -> bool:
    """Whether a tenant's BM25 statistics come from a sample of its newest rows (it is larger
    than the sample) rather than from exact counts."""
    return tenant_rows > BM25_STAT_SAMPLE


# A tenant no larger than the sample: exact statistics, each count through the GIN index (for a
# small tenant, cheaper than reading its rows), every lexeme informative.
EXACT_KEYWORD_TERMS = """
keyword_scope AS (
    SELECT count(*)::float8 AS docs FROM (
        SELECT 1 FROM {table} WHERE tenant_id = :tenant_id{filters} LIMIT :stat_sample
    ) scope
), keyword_terms AS MATERIALIZED (
    SELECT q.lexeme,
           ln(1.0 + (greatest(s.docs, d.df) - d.df + 0.5) / (d.df + 0.5)) AS idf
    FROM unnest(to_tsvector('english', :query_text)) AS q(lexeme, positions, weights)
    CROSS JOIN keyword_scope s
    CROSS JOIN LATERAL (
        SELECT count(*)::float8 AS df FROM (
            SELECT 1 FROM {table}
            WHERE tenant_id = :tenant_id
              AND content_tsv @@ to_tsquery('simple', quote_literal(q.lexeme)){filters}
            LIMIT :stat_sample
        ) having_it
    ) d
)"""

# A larger tenant: statistics from the sample, candidates from the informative lexemes.
SAMPLED_KEYWORD_TERMS = """
keyword_sample AS MATERIALIZED (
    SELECT content_tsv FROM {table}
    WHERE tenant_id = :tenant_id{filters}
    ORDER BY created_at DESC
    LIMIT :stat_sample
), keyword_scope AS (
    SELECT count(*)::float8 AS docs FROM keyword_sample
), keyword_terms AS MATERIALIZED (
    SELECT q.lexeme,
           ln(1.0 + (s.docs - d.df + 0.5) / (d.df + 0.5)) AS idf,
           s.docs < :stat_sample OR d.df <= :common_share * s.docs AS informative
    FROM (  -- OFFSET 0: each lexeme's tsquery is built once, not once per sampled row
        SELECT lexeme, to_tsquery('simple', quote_literal(lexeme)) AS alone
        FROM unnest(to_tsvector('english', :query_text)) AS terms(lexeme, positions, weights)
        OFFSET 0
    ) q
    CROSS JOIN keyword_scope s
    CROSS JOIN LATERAL (
        SELECT count(*)::float8 AS df FROM keyword_sample k WHERE k.content_tsv @@ q.alone
    ) d
), keyword_query AS (
    SELECT coalesce(
               to_tsquery('simple', string_agg(quote_literal(lexeme), ' | ')
                                    FILTER (WHERE informative)),
               websearch_to_tsquery('english', :query_text)) AS tsq
    FROM keyword_terms
)"""

BM25_KEYWORD_HITS = """
keyword_candidates AS (
    SELECT m.tenant_id, m.id, m.content_tsv
    FROM {table} m
    WHERE m.tenant_id = :tenant_id
      AND m.content_tsv @@ {tsquery}{filters}
    LIMIT :match_cap
), keyword_hits AS (
    SELECT tenant_id, id, keyword_score,
           row_number() OVER (ORDER BY keyword_score DESC, id) AS keyword_rank
    FROM (
        SELECT tenant_id, id,
               (sum(idf * tf * (:bm25_k1 + 1.0)
                    / (tf + :bm25_k1 * (1.0 - :bm25_b + :bm25_b * doc_length / avg_length)))
                  / (SELECT greatest(sum(idf), 1e-9) * (:bm25_k1 + 1.0) FROM keyword_terms)
                + CASE WHEN bool_or(has_all) THEN 1.0 ELSE 0.0 END) / 2.0 AS keyword_score
        FROM (
            SELECT c.tenant_id, c.id, t.idf,
                   coalesce(cardinality(d.positions), 1)::float8 AS tf,
                   length(c.content_tsv)::float8 AS doc_length,
                   avg(length(c.content_tsv)::float8) OVER () AS avg_length,
                   c.content_tsv @@ websearch_to_tsquery('english', :query_text) AS has_all
            FROM keyword_candidates c
            CROSS JOIN LATERAL unnest(c.content_tsv) AS d(lexeme, positions, weights)
            JOIN keyword_terms t ON t.lexeme = d.lexeme
        ) matched_terms
        GROUP BY tenant_id, id
        ORDER BY keyword_score DESC
        LIMIT :candidate_pool
    ) matched
)"""
# A keyword-only hit's similarity is computed from its stored vector (a few dozen rows at most),
# so every hit that has a vector of the current model explains itself fully.
SIMILARITY_FROM_VECTORS = f"""CASE WHEN f.distance IS NOT NULL THEN greatest(0.0, 1.0 - f.distance)
                WHEN m.embedding_status = {READY} AND m.embedding_model = :model
                THEN greatest(0.0, 1.0 - (m.embedding <=> CAST(:query_vector AS vector)))
                END"""
NO_SIMILARITY = "NULL::float8"


def _similarity(plan: SearchPlan) -> str:
    if plan.mode is SearchMode.keyword:
        return NO_SIMILARITY
    if plan.context_vectors is ContextVectors.off:
        return SIMILARITY_FROM_VECTORS
    return SIMILARITY_FROM_VECTORS.replace(
        "(m.embedding <=> CAST(:query_vector AS vector))",
        CONTEXT_DISTANCE[plan.context_vectors].format(p="m."),
    )

SEARCH_SQL = """
WITH {vector_hits}, {keyword_hits},
fused AS (
    SELECT coalesce(v.tenant_id, k.tenant_id) AS tenant_id, coalesce(v.id, k.id) AS id,
           v.distance, v.vector_rank, k.keyword_score, k.keyword_rank,
           coalesce(1.0 / (:rrf_k + v.vector_rank), 0.0)
             + coalesce(1.0 / (:rrf_k + k.keyword_rank), 0.0) AS fused
    FROM vector_hits v
    FULL JOIN keyword_hits k ON k.tenant_id = v.tenant_id AND k.id = v.id
), hits AS (
    SELECT m.id, m.conversation_id, m.user_id, m.role, m.kind, m.content, m.metadata, m.importance,
           m.created_at, m.expires_at, m.embedding_status, m.encryption_key_id, m.ciphertext,{embedding}
           m.use_count, m.success_count, m.failure_count, m.last_used_at,
           f.vector_rank, {similarity} AS similarity,
           f.keyword_rank, f.keyword_score, f.fused,
           {recency} AS recency, {feedback} AS feedback
    FROM fused f
    JOIN {table} m ON m.tenant_id = f.tenant_id AND m.id = f.id
), signals AS (
    SELECT *, {relevance} AS relevance FROM hits
), scored AS ({scored}
)
SELECT * FROM scored{min_score}
ORDER BY score DESC, created_at DESC, id
LIMIT :limit
"""

_FILTERS = {
    "conversation_id": "conversation_id = :conversation_id",
    "user_id": "user_id = :user_id",
    "role": "role = :role",
    "kind": "kind = :kind",
    "kinds": "kind = ANY(CAST(:kinds AS text[]))",
    "importance_min": "importance >= :importance_min",
    "since": "created_at >= :since",
    "until": "created_at <= :until",
    "metadata": "metadata @> CAST(:metadata AS jsonb)",
    "pii_kind": ":pii_kind = ANY(pii_kinds)",
    "channel": "channel = :channel",
}


# A question in plain words matches messages holding any of its terms: requiring all of them, as
# websearch syntax does, finds almost nothing for a question like "what did the landlord say about
# the boiler?". The keyword score is half cover density (ts_rank_cd / (1 + ts_rank_cd)) and half
# "every term matched" (websearch semantics, so a code like KX-4471-B must match as a phrase):
# full-text ranking has no IDF, and without that half a rare exact token weighs no more than a
# common word. Queries that use websearch operators keep their strict meaning.
# The lexemes are already stemmed by the english parser; 'simple' reads them back unchanged.
ANY_TERM_TSQUERY = (
    "to_tsquery('simple', replace(websearch_to_tsquery('english', :query_text)::text, ' & ', ' | '))"
)
WEBSEARCH_TSQUERY = "websearch_to_tsquery('english', :query_text)"


def _filter_sql(filters: SearchFilters) -> tuple[str, dict[str, Any]]:
    # Expiry is checked row by row as candidates come out of either index (HNSW with iterative
    # scans, GIN), like the other filters: the indexes keep serving the search.
    fragments: list[str] = [UNEXPIRED_SQL]
    params: dict[str, Any] = {}
    if not filters.include_archived:
        fragments.append("archived_at IS NULL")
    if not filters.include_superseded:
        fragments.append(CURRENT_SQL)
    for name, fragment in _FILTERS.items():
        value = getattr(filters, name)
        if value is not None:
            fragments.append(fragment)
            if name == "metadata":
                value = json.dumps(value)
            elif name == "kinds":
                value = list(value)
            params[name] = value
    return "".join(f"\n          AND {fragment}" for fragment in fragments), params


# Bonuses from the query's cues (search/cues.py), added to the mode's relevance and capped at 1;
# only spliced in when the plan has them, so a plain search's statement does not change.
TIME_CUE = "CASE WHEN created_at >= :cue_since AND created_at < :cue_until THEN :time_boost ELSE 0.0 END"
DAY_CUE = (
    "CASE WHEN extract(month FROM created_at) = :cue_month AND extract(day FROM created_at) = :cue_day"
    " THEN :time_boost ELSE 0.0 END"
)
SPEAKER_CUE = "CASE WHEN lower(user_id) = ANY(CAST(:cue_words AS text[])) THEN :speaker_boost ELSE 0.0 END"


def _relevance_with_cues(plan: SearchPlan, params: dict[str, Any]) -> str:
    relevance = relevance_sql(plan.mode, plan.fusion)
    cues: list[str] = []
    if plan.period is not None and plan.time_boost > 0:
        cues.append(TIME_CUE)
        params.update(cue_since=plan.period.since, cue_until=plan.period.until,
                      time_boost=plan.time_boost)
    elif plan.day is not None and plan.time_boost > 0:
        cues.append(DAY_CUE)
        params.update(cue_month=plan.day[0], cue_day=plan.day[1], time_boost=plan.time_boost)
    if plan.words and plan.speaker_boost > 0:
        cues.append(SPEAKER_CUE)
        params.update(cue_words=list(plan.words), speaker_boost=plan.speaker_boost)
    if not cues:
        return relevance
    return f"least(1.0, coalesce({relevance}, 0.0) + " + " + ".join(cues) + ")"


# A search's statement text depends only on the plan's shape (mode, filters present, cues), so a
# few dozen texts cover every request; parsing one into a TextClause (its bind parameters found by
# a regular expression) cost about a tenth of a cached search's time in the profile, so each text
# is parsed once per process.
@lru_cache(maxsize=512)
def _statement(sql: str, uses_vectors: bool) -> TextClause:
    statement = text(sql)
    if uses_vectors:
        statement = statement.bindparams(vector_param("query_vector"))
    return statement


@lru_cache(maxsize=512)
def _typed(statement: TextClause, with_embedding: bool) -> TextualSelect:
    """The statement with its score columns read as floats (and the vector, when asked)."""
    columns: dict[str, Any] = dict.fromkeys(SCORE_COLUMNS, Float())
    if with_embedding:
        columns["embedding"] = Vector()
    return statement.columns(**columns)


def _keyword_hits(plan: SearchPlan, where: str) -> str:
    if plan.mode is SearchMode.vector:
        return NO_KEYWORD_HITS
    if plan.keyword_scoring is KeywordScoring.cover_density:
        tsquery = WEBSEARCH_TSQUERY if plan.strict_keywords else ANY_TERM_TSQUERY
        return KEYWORD_HITS.format(filters=where, tsquery=tsquery, table=plan.table)
    # A query written with websearch operators keeps its strict meaning; otherwise candidates
    # hold any lexeme (exact statistics) or an informative one (sampled: keyword_query).
    terms = SAMPLED_KEYWORD_TERMS if plan.sampled_statistics else EXACT_KEYWORD_TERMS
    if plan.strict_keywords:
        tsquery = WEBSEARCH_TSQUERY
    elif plan.sampled_statistics:
        tsquery = "(SELECT tsq FROM keyword_query)"
    else:
        tsquery = ANY_TERM_TSQUERY
    return (terms.format(filters=where, table=plan.table) + ","
            + BM25_KEYWORD_HITS.format(filters=where, tsquery=tsquery, table=plan.table))


def build_search_sql(plan: SearchPlan) -> tuple[TextClause, dict[str, Any]]:
    """The search statement for one plan, and every parameter it binds."""
    where, params = _filter_sql(plan.filters)
    uses_vectors = plan.mode is not SearchMode.keyword
    sql = SEARCH_SQL.format(
        vector_hits=_vector_hits(plan, where) if uses_vectors else NO_VECTOR_HITS,
        keyword_hits=_keyword_hits(plan, where),
        table=plan.table,
        relevance=_relevance_with_cues(plan, params),
        similarity=_similarity(plan),
        recency=RECENCY_SQL.format(
            created_at=FRESH_SINCE_SQL.format(created_at="m.created_at", last_used_at="m.last_used_at"),
            kind="m.kind",
        ),
        feedback=FEEDBACK_SQL.format(successes="m.success_count", failures="m.failure_count"),
        scored=SCORED_SQL.format(source="signals"),
        embedding="\n           m.embedding," if plan.with_embedding else "",
        min_score="\nWHERE score >= :min_score" if plan.min_score is not None else "",
    )
    params.update(
        plan.weights.params(),
        tenant_id=plan.tenant_id,
        candidate_pool=plan.candidate_pool,
        limit=plan.limit,
        rrf_k=plan.rrf_k,
        keyword_weight=plan.keyword_weight,
    )
    statement = _statement(sql, uses_vectors)
    if uses_vectors:
        params.update(query_vector=plan.query_vector, model=plan.model)
    if plan.mode is not SearchMode.vector:
        params["query_text"] = plan.query_text
        if plan.keyword_scoring is not KeywordScoring.cover_density:
            params.update(stat_sample=BM25_STAT_SAMPLE, common_share=BM25_COMMON_SHARE,
                          match_cap=BM25_MATCH_CAP, bm25_k1=BM25_K1, bm25_b=BM25_B)
    if plan.min_score is not None:
        params["min_score"] = plan.min_score
    return statement, params


# Read as Python floats: numeric arithmetic (1.0 / (rrf_k + rank), and what is computed from it)
# would otherwise come back as Decimal.
SCORE_COLUMNS = (
    "importance", "similarity", "keyword_score", "fused", "relevance", "recency", "feedback",
    "part_relevance", "part_importance", "part_recency", "score",
)


# The turn after each given message in its conversation (the same filters as the search), for
# answer expansion (search/answers.py). The (tenant, conversation, created_at) index serves it.
NEXT_TURNS_SQL = """
SELECT q.id AS question_id, a.*
FROM {table} q
CROSS JOIN LATERAL (
    SELECT id, conversation_id, user_id, role, kind, content, metadata, importance, created_at,
           expires_at, embedding_status, use_count, success_count, failure_count, last_used_at,
           tenant_id, encryption_key_id, ciphertext
    FROM {table}
    WHERE tenant_id = q.tenant_id
      AND conversation_id = q.conversation_id
      AND (created_at, id) > (q.created_at, q.id){filters}
    ORDER BY created_at, id
    LIMIT 1
) a
WHERE q.tenant_id = :tenant_id AND q.id = ANY(CAST(:ids AS uuid[]))
"""


# The turns just before and after each given message in its conversation (the same filters as the
# search), for neighbour expansion (search/context.py): one statement, two index probes per hit
# on the (tenant, conversation, created_at) index.
_TURN_COLUMNS = """id, conversation_id, user_id, role, kind, content, metadata, importance, created_at,
           expires_at, embedding_status, use_count, success_count, failure_count, last_used_at,
           tenant_id, encryption_key_id, ciphertext"""
NEIGHBOUR_TURNS_SQL = f"""
SELECT h.id AS hit_id, n.*
FROM {{table}} h
CROSS JOIN LATERAL (
    (SELECT {_TURN_COLUMNS}
     FROM {{table}}
     WHERE tenant_id = h.tenant_id
       AND conversation_id = h.conversation_id
       AND (created_at, id) < (h.created_at, h.id){{filters}}
     ORDER BY created_at DESC, id DESC
     LIMIT 1)
    UNION ALL
    (SELECT {_TURN_COLUMNS}
     FROM {{table}}
     WHERE tenant_id = h.tenant_id
       AND conversation_id = h.conversation_id
       AND (created_at, id) > (h.created_at, h.id){{filters}}
     ORDER BY created_at, id
     LIMIT 1)
) n
WHERE h.tenant_id = :tenant_id AND h.id = ANY(CAST(:ids AS uuid[]))
"""

# The partition of `messages` that holds a tenant's rows (its name, as the catalog prints it)
# and PostgreSQL's estimate of its rows (`pg_class.reltuples`, 0 before it was first analyzed);
# no row for a tenant without messages. The benchmarks read the same figures with it.
TENANT_PARTITION_SQL = """
SELECT oid::regclass::text AS name, greatest(reltuples, 0)::bigint AS rows FROM pg_class
WHERE oid = (SELECT tableoid FROM messages WHERE tenant_id = :tenant_id LIMIT 1)
"""



def opened_row(ring: EncryptionKeyRing, tenant_id: str, row: ScoredRow) -> ScoredRow:
    """A hit of an encrypted channel with its content and metadata in plaintext."""
    if row.ciphertext is None or row.encryption_key_id is None:
        return row
    content, metadata = open_message(
        ring, tenant_id, row.id, row.encryption_key_id, row.ciphertext
    )
    return replace(row, content=content, metadata=metadata)


def opened_turn(ring: EncryptionKeyRing, fields: dict[str, Any]) -> dict[str, Any]:
    """A neighbouring turn (answer or neighbour expansion) in plaintext, without the columns
    that opened it."""
    tenant_id = fields.pop("tenant_id")
    key_id = fields.pop("encryption_key_id")
    ciphertext = fields.pop("ciphertext")
    if key_id is not None and ciphertext is not None:
        fields["content"], fields["metadata"] = open_message(
            ring, tenant_id, fields["id"], key_id, ciphertext
        )
    return fields

class SearchRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def search(self, plan: SearchPlan) -> list[ScoredRow]:
        """Candidates from HNSW and/or full text, fused and ranked by the final score in SQL.

        hnsw.ef_search and hnsw.iterative_scan are set on every connection by the engine.
        """
        statement, params = build_search_sql(plan)
        result = await self.session.execute(_typed(statement, plan.with_embedding), params)
        # The statement's columns are ScoredRow's fields, by name.
        ring = keyring_of(self.session)
        return [opened_row(ring, plan.tenant_id, ScoredRow(**row._mapping)) for row in result]

    async def next_turns(
        self, tenant_id: str, ids: list[uuid.UUID], filters: SearchFilters, table: str = "messages"
    ) -> dict[uuid.UUID, dict[str, Any]]:
        """The message after each of `ids` in its conversation, by the id it follows (`table`:
        `messages`, or the tenant's partition of it)."""
        if not ids:
            return {}
        where, params = _filter_sql(filters)
        result = await self.session.execute(
            text(NEXT_TURNS_SQL.format(filters=where, table=table)),
            {**params, "tenant_id": tenant_id, "ids": ids},
        )
        ring = keyring_of(self.session)
        return {
            row.question_id: opened_turn(
                ring, {k: v for k, v in row._mapping.items() if k != "question_id"}
            )
            for row in result
        }

    async def neighbour_turns(
        self, tenant_id: str, ids: list[uuid.UUID], filters: SearchFilters, table: str = "messages"
    ) -> dict[uuid.UUID, list[dict[str, Any]]]:
        """The messages just before and after each of `ids` in its conversation, by the id they
        neighbour (`table`: `messages`, or the tenant's partition of it)."""
        if not ids:
            return {}
        where, params = _filter_sql(filters)
        result = await self.session.execute(
            text(NEIGHBOUR_TURNS_SQL.format(filters=where, table=table)),
            {**params, "tenant_id": tenant_id, "ids": ids},
        )
        found: dict[uuid.UUID, list[dict[str, Any]]] = {}
        for row in result:
            fields = opened_turn(
                keyring_of(self.session), {k: v for k, v in row._mapping.items() if k != "hit_id"}
            )
            found.setdefault(row.hit_id, []).append(fields)
        return found

    async def stored_vector(
        self, tenant_id: str, message_id: uuid.UUID
    ) -> tuple[str, str | None, list[float] | None] | None:
        """A live message's embedding status, model and vector; None when there is no such
        message (or it has expired)."""
        result = await self.session.execute(
            text(
                "SELECT embedding_status, embedding_model, embedding FROM messages "
                f"WHERE tenant_id = :tenant_id AND id = :id AND {UNEXPIRED_SQL}"
            ).columns(embedding_status=String(), embedding_model=String(), embedding=Vector()),
            {"tenant_id": tenant_id, "id": message_id},
        )
        row = result.one_or_none()
        if row is None:
            return None
        vector = row.embedding
        return row.embedding_status, row.embedding_model, (
            [float(x) for x in vector] if vector is not None else None
        )

    async def tenant_size(self, tenant_id: str, cap: int) -> int:
        """The tenant's message count, counted no further than `cap` + 1 (cheap for big tenants)."""
        result = await self.session.execute(
            text(
                "SELECT count(*) FROM (SELECT 1 FROM messages WHERE tenant_id = :tenant_id "
                "LIMIT :cap) AS capped"
            ),
            {"tenant_id": tenant_id, "cap": cap + 1},
        )
        return int(result.scalar_one())

    async def partition(self, tenant_id: str) -> tuple[str, int] | None:
        """The partition of `messages` that holds the tenant's rows (its name, as the catalog
        gives it) and how many rows it has, as PostgreSQL last estimated them
        (`pg_class.reltuples`, kept by (auto)vacuum and analyze; 0 before it was first
        analyzed); None for a tenant without messages."""
        result = await self.session.execute(text(TENANT_PARTITION_SQL), {"tenant_id": tenant_id})
        row = result.one_or_none()
        return None if row is None else (str(row[0]), int(row[1]))
