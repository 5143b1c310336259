"""Conversation context of the hits: the turns around a strong hit, and the sessions that hold
several strong hits.

In a chat the fact a question needs is often in the turn next to the one that matches it: the
answer after a matching question ("Did you ever make it to Lisbon?" / "Yes, last May!"), the
question before a matching answer, the remark that names the subject before a reply that does
not. And evidence spread over a conversation gathers in the sittings where the subject came up.

- Neighbours (MEMORY_SEARCH_NEIGHBOURS = n): the turns just before and after each of the n best
  hits, in the same conversation (by created_at, then id; the same filters as the search), join
  the hits with the hit's score times MEMORY_SEARCH_NEIGHBOUR_DECAY (every part scaled, so the
  parts still add up to the score); a neighbour that is a hit of its own keeps the better score.
  Their own vector and keyword signals are left empty when they did not rank them.
- Sessions (MEMORY_SEARCH_SESSION_BOOST = b): among the candidates, every row within
  MEMORY_SEARCH_SESSION_GAP_MINUTES of at least two of the SESSION_STRONG_HITS best hits in the
  same conversation (itself counted when it is one) gets b added to its relevance (capped at 1),
  short of passing the best hit, which stays first.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from memory_layer.search.plan import ScoredRow

# The best hits whose sessions count, and how many of them make a session strong.
SESSION_STRONG_HITS = 5
SESSION_MIN_HITS = 2


def _order(rows: list[ScoredRow]) -> list[ScoredRow]:
    """The search statement's order: score, then the newer, then id."""
    rows = sorted(rows, key=lambda row: row.id)
    rows.sort(key=lambda row: row.created_at, reverse=True)
    rows.sort(key=lambda row: row.score, reverse=True)
    return rows


def _with_relevance(row: ScoredRow, relevance: float, w_relevance: float) -> ScoredRow:
    """The row with a new relevance, its relevance part and score following it."""
    part = row.feedback * w_relevance * relevance
    return dataclasses.replace(
        row, relevance=relevance, part_relevance=part,
        score=part + row.part_importance + row.part_recency,
    )


def boost_sessions(
    rows: list[ScoredRow], *, boost: float, gap: timedelta, w_relevance: float
) -> list[ScoredRow]:
    """The rows re-ranked with the session bonus (unchanged when no session holds two strong
    hits). The best hit stays first: another row's bonus stops where its score would pass it."""
    if not rows:
        return rows
    strong = rows[:SESSION_STRONG_HITS]

    def bonus(row: ScoredRow, ceiling: float | None) -> float:
        near = sum(
            1 for hit in strong
            if hit.conversation_id == row.conversation_id
            and abs(hit.created_at - row.created_at) <= gap
        )
        if near < SESSION_MIN_HITS:
            return 0.0
        added = min(boost, 1.0 - row.relevance)
        if ceiling is not None:
            weight = row.feedback * w_relevance
            room = (ceiling - row.score) / weight if weight > 0 else 0.0
            added = min(added, room)
        return max(0.0, added)

    def boosted(row: ScoredRow, added: float) -> ScoredRow:
        if added <= 0:
            return row
        return dataclasses.replace(
            _with_relevance(row, row.relevance + added, w_relevance), session_boost=added
        )

    best = boosted(rows[0], bonus(rows[0], None))
    rest = [boosted(row, bonus(row, best.score)) for row in rows[1:]]
    if best is rows[0] and all(new is old for new, old in zip(rest, rows[1:], strict=True)):
        return rows
    return [best, *_order(rest)]


def strong_hits(rows: list[ScoredRow], count: int) -> list[uuid.UUID]:
    return [row.id for row in rows[:count]]


def add_neighbours(
    rows: list[ScoredRow],
    neighbours: Mapping[uuid.UUID, Sequence[Mapping[str, Any]]],
    *,
    decay: float,
) -> list[ScoredRow]:
    """The hits and the neighbours of the strong ones, best first (the caller cuts the list)."""
    by_id = {row.id: row for row in rows}
    for hit in rows:
        for fields in neighbours.get(hit.id, ()):
            score = hit.score * decay
            found = by_id.get(fields["id"])
            if found is not None and found.score >= score:
                continue
            base = found if found is not None else dataclasses.replace(
                # not ranked on its own: its own signals left empty
                hit, **fields, vector_rank=None, similarity=None, keyword_rank=None,
                keyword_score=None, fused=0.0, embedding=None, mmr_rank=None, session_boost=0.0,
            )
            # A hit of its own ranked lower is raised, its signals kept.
            by_id[base.id] = dataclasses.replace(
                base,
                relevance=hit.relevance * decay,
                part_relevance=hit.part_relevance * decay,
                part_importance=hit.part_importance * decay,
                part_recency=hit.part_recency * decay,
                score=score,
            )
    return _order(list(by_id.values()))
