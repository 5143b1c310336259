"""The offline provider (the default): no model call, nothing to download.

Facts: the rules of consolidation/rules.py. Reconciliation: the rules too (`decide` answers None).

Summaries: the conversation's most central and important turns, quoted in order. Each turn of the
window scores

    0.6 * centrality + 0.4 * importance

where centrality is the cosine similarity of its stored embedding to the mean of the window's
embeddings (what the conversation is mostly about), and importance is the stored score
(messages/importance.py: facts, preferences and instructions rank high, pleasantries low). Turns
are then picked by maximal marginal relevance (search/diversity.py, lambda 0.7), so five turns
saying the same thing do not fill the summary. Turns without a vector count as central as the
average turn. The previous summary is not needed: the window is read afresh each time.
"""

from __future__ import annotations

import numpy as np

from memory_layer.consolidation.providers.base import Decision, FactDraft, KnownFact, Turn
from memory_layer.consolidation.rules import extract_facts
from memory_layer.search.diversity import mmr_order

CENTRALITY_WEIGHT = 0.6
IMPORTANCE_WEIGHT = 0.4
MMR_LAMBDA = 0.7
# A quoted turn longer than this is cut (at a word) and marked with an ellipsis.
MAX_QUOTE_CHARS = 280


def _centrality(turns: list[Turn]) -> list[float]:
    vectors = [turn.embedding for turn in turns if turn.embedding is not None]
    if not vectors:
        return [0.5] * len(turns)
    matrix = np.asarray(vectors, dtype=np.float64)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    centre = matrix.mean(axis=0)
    norm = float(np.linalg.norm(centre))
    if norm == 0.0:
        return [0.5] * len(turns)
    centre /= norm
    similarity = iter((matrix @ centre).tolist())
    scores = [next(similarity) if turn.embedding is not None else None for turn in turns]
    average = float(np.mean([s for s in scores if s is not None]))
    return [average if s is None else s for s in scores]


def _quote(turn: Turn) -> str:
    text = " ".join(turn.content.split())
    if len(text) > MAX_QUOTE_CHARS:
        text = text[:MAX_QUOTE_CHARS].rsplit(" ", 1)[0] + " …"
    return f"{turn.role}: {text}"


def select_turns(turns: list[Turn], limit: int) -> list[Turn]:
    """The `limit` turns a summary quotes, in conversation order."""
    if len(turns) <= limit:
        return list(turns)
    centrality = _centrality(turns)
    scores = [
        CENTRALITY_WEIGHT * c + IMPORTANCE_WEIGHT * turn.importance
        for c, turn in zip(centrality, turns, strict=True)
    ]
    order = mmr_order(scores, [turn.embedding for turn in turns], lambda_=MMR_LAMBDA, k=limit)
    return [turns[i] for i in sorted(order)]


def extractive_summary(turns: list[Turn], limit: int) -> str:
    """The selected turns, one per line, prefixed by their role."""
    return "\n".join(_quote(turn) for turn in select_turns(turns, limit))


class ExtractiveProvider:
    """Rules for facts, central and important turns for summaries."""

    @property
    def name(self) -> str:
        return "extractive"

    @property
    def uses_model(self) -> bool:
        return False

    async def extract(self, turn: Turn) -> list[FactDraft]:
        """Facts and preferences the turn states in a form the rules know."""
        return extract_facts(turn.content)

    async def decide(self, draft: FactDraft, candidates: list[KnownFact]) -> Decision | None:
        """None: the rules decide."""
        return None

    async def summarize(self, previous: str | None, turns: list[Turn], limit: int) -> str:
        """The window's most central and important turns, in order."""
        return extractive_summary(turns, limit)

    async def close(self) -> None:
        return None
