"""Answer expansion: a hit that asks a question brings the turn that answers it.

In a chat, "Did you ever make it to Lisbon?" is followed by "Yes, last May! The food alone was
worth it.": the answer holds the fact but shares no word with a query about Lisbon, and its vector
is about food. With MEMORY_SEARCH_ANSWER_EXPANSION the next turn of each question in the top hits
is placed right after it (and moved up if it was ranked lower), taking its question's relevance
and score; its own vector and keyword signals are left empty, as they did not rank it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any

from memory_layer.search.plan import ScoredRow


def asks(content: str) -> bool:
    """Whether a turn ends with a question."""
    return content.rstrip().endswith("?")


def questions_among(rows: list[ScoredRow]) -> list[uuid.UUID]:
    return [row.id for row in rows if asks(row.content)]


def expand_answers(
    rows: list[ScoredRow], answers: Mapping[uuid.UUID, Mapping[str, Any]], limit: int
) -> list[ScoredRow]:
    """The hits with each question's answer right after it, at most `limit` of them."""
    chosen: list[ScoredRow] = []
    seen: set[uuid.UUID] = set()
    for row in rows:
        if row.id in seen:
            continue
        chosen.append(row)
        seen.add(row.id)
        answer = answers.get(row.id)
        if answer is not None and answer["id"] not in seen:
            chosen.append(dataclasses.replace(
                row, **answer, vector_rank=None, similarity=None, keyword_rank=None,
                keyword_score=None, embedding=None, mmr_rank=None,
            ))
            seen.add(answer["id"])
    return chosen[:limit]
