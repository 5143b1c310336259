"""How a search hit is scored: the one definition of the formula, as SQL the search runs.

    relevance  = per mode, in [0, 1] (RELEVANCE below)
    recency    = 0.5 ** (age_hours / half_life_hours(kind))
    age_hours  = hours since the later of created_at and last_used_at (MEMORY_RECENCY_FROM_LAST_USE;
                 else since created_at)
    half_life_hours(kind) = MEMORY_KIND_HALF_LIFE_HOURS[kind], else MEMORY_RECENCY_HALF_LIFE_HOURS
    feedback   = 1 - MEMORY_SEARCH_FAILURE_PENALTY * failures / (successes + failures + 2)
    part_x     = feedback * w_x * x / (w_relevance + w_importance + w_recency)
                                               for x in relevance, importance, recency
    score      = part_relevance + part_importance + part_recency

so every score lies in [0, 1] and the parts returned with each hit add up to it. The SQL computes
them once; nothing recomputes them in Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from memory_layer.config import SearchFusion, Settings
from memory_layer.models.message import Kind
from memory_layer.search.plan import SearchMode


@dataclass(frozen=True)
class ScoreWeights:
    relevance: float = 0.7
    importance: float = 0.2
    recency: float = 0.1
    half_life_hours: float = 168.0
    # Kinds that age at their own pace (a fact stays true for months, chit-chat does not);
    # the others use half_life_hours.
    kind_half_life_hours: Mapping[str, float] = field(default_factory=dict)
    # Usage feedback: recency from the last use; the share of the score failures take away.
    recency_from_last_use: bool = False
    failure_penalty: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ScoreWeights:
        return cls(
            relevance=settings.score_weight_similarity,
            importance=settings.score_weight_importance,
            recency=settings.score_weight_recency,
            half_life_hours=settings.recency_half_life_hours,
            kind_half_life_hours={
                kind.value: hours for kind, hours in settings.kind_half_life_hours.items()
            },
            recency_from_last_use=settings.recency_from_last_use,
            failure_penalty=settings.search_failure_penalty,
        )

    def half_life_for(self, kind: str) -> float:
        return self.kind_half_life_hours.get(kind, self.half_life_hours)

    @property
    def total(self) -> float:
        total = self.relevance + self.importance + self.recency
        return total if total > 0 else 1.0

    def params(self) -> dict[str, Any]:
        """The bind parameters SCORED_SQL, RECENCY_SQL, FRESH_SINCE_SQL and FEEDBACK_SQL read."""
        return {
            "half_life_hours": self.half_life_hours,
            **{f"half_life_{kind.value}": self.half_life_for(kind.value) for kind in Kind},
            "w_relevance": self.relevance / self.total,
            "w_importance": self.importance / self.total,
            "w_recency": self.recency / self.total,
            "recency_from_last_use": self.recency_from_last_use,
            "failure_penalty": self.failure_penalty,
        }


# Relevance in [0, 1] per mode: cosine similarity (vector); the keyword score (keyword);
# for hybrid, by MEMORY_SEARCH_FUSION, either ("weighted") the similarity plus a keyword bonus,
# min(1, similarity + keyword_weight * keyword_score), or ("rrf") the reciprocal-rank-fused score
# over its maximum 2/(rrf_k+1). docs/evaluation.md has the measurements behind the default:
# RRF flattens the top ranks so much that importance and recency decide between a strong and a
# weak match, and a convex mix halves the similarity scale for the same reason.
_RELEVANCE_BY_MODE = {
    SearchMode.vector: "similarity",
    SearchMode.keyword: "coalesce(keyword_score, 0.0)",
}
_RELEVANCE_BY_FUSION = {
    SearchFusion.rrf: "fused * (:rrf_k + 1) / 2.0",
    SearchFusion.weighted: (
        "least(1.0, coalesce(similarity, 0.0) + :keyword_weight * coalesce(keyword_score, 0.0))"
    ),
}


def relevance_sql(mode: SearchMode, fusion: SearchFusion) -> str:
    """The SQL expression of a hit's relevance for this mode (and, for hybrid, this fusion)."""
    if mode is SearchMode.hybrid:
        return _RELEVANCE_BY_FUSION[fusion]
    return _RELEVANCE_BY_MODE[mode]


# The half-life of a row's kind: one bind parameter per kind, so the statement text never changes
# with the settings; a kind the enum does not know falls back to the default half-life.
HALF_LIFE_SQL = (
    "CASE {kind} "
    + " ".join(f"WHEN '{kind.value}' THEN CAST(:half_life_{kind.value} AS float8)" for kind in Kind)
    + " ELSE CAST(:half_life_hours AS float8) END"
)

# Over a row's creation time and kind (SQL expressions spliced in by the caller). At most 1000
# half-lives (0.5^1000 is 1e-301, zero for any score): PostgreSQL raises an underflow error on
# power(0.5, x) past about 1074, which a message imported with a created_at centuries ago reaches.
RECENCY_SQL = (
    "power(0.5, least(1000.0, greatest(0.0, extract(epoch FROM now() - ({created_at})) / 3600.0) "
    f"/ ({HALF_LIFE_SQL})))"
)

# The time recency counts from: the later of a memory's creation and its last use, when
# MEMORY_RECENCY_FROM_LAST_USE (greatest() skips the NULL of a memory never used).
FRESH_SINCE_SQL = (
    "greatest({created_at}, CASE WHEN CAST(:recency_from_last_use AS boolean) "
    "THEN {last_used_at} END)"
)

# How far failures pull a memory down, in (0, 1]: 1 without failures; a prior of one success and
# one failure keeps a single failed use from halving a memory that has barely been tried.
FEEDBACK_SQL = (
    "(1.0 - CAST(:failure_penalty AS float8) * ({failures}) "
    "/ (({successes}) + ({failures}) + 2.0))"
)

# Over rows that have `relevance`, `importance`, `recency` and `feedback` columns. A stored importance below
# 1e-300 (a client may send 5e-324) counts as 0: PostgreSQL raises an underflow error on a product
# that rounds to zero (5e-324 * 0.2).
SCORED_SQL = """
    SELECT *, part_relevance + part_importance + part_recency AS score
    FROM (
        SELECT *,
               feedback * CAST(:w_relevance AS float8) * relevance AS part_relevance,
               feedback * CAST(:w_importance AS float8)
                 * CASE WHEN importance < 1e-300 THEN 0.0 ELSE CAST(importance AS float8) END
                 AS part_importance,
               feedback * CAST(:w_recency AS float8) * recency AS part_recency
        FROM {source}
    ) parts"""
