"""Importance and ranking formulas (pure functions; the SQL in repositories mirrors `final_score`).

Importance (0..1) of a message, unless the client sends `importance_override`:
    base by role (user 0.50, assistant 0.35, system 0.60, tool 0.25)
  + 0.20 if it states a fact, preference or instruction worth keeping
         ("remember", "my name is", "I prefer", "I love", "never", "allergic", ...)
  + 0.05 if it contains a number (dates, amounts, ids are concrete facts)
  + 0.05 for 8+ words, 0.10 for 30+ words (substance)
  - 0.15 for a bare pleasantry of at most three words ("thanks!", "ok", "hi")
  clamped to [0, 1] and rounded to three decimals.

Final score of a search hit, with weights w (settings) and half-life h (hours):
    similarity = max(0, 1 - cosine_distance)
    recency    = 0.5 ** (age_hours / h)
    score      = (w_sim * similarity + w_imp * importance + w_rec * recency) / (w_sim + w_imp + w_rec)
so every score lies in [0, 1] and the weighted parts returned with each hit add up to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROLE_BASE_IMPORTANCE: dict[str, float] = {
    "user": 0.50,
    "assistant": 0.35,
    "system": 0.60,
    "tool": 0.25,
}

_SALIENT = re.compile(
    r"\b(remember|don'?t forget|important|always|never|must|deadline|allergic|allergy|"
    r"my name is|call me|i am|i'm|i live|i work|i prefer|i love|i like|i hate|i dislike|"
    r"i want|i need|my (?:favou?rite|birthday|wife|husband|partner|son|daughter|email|phone))\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d")
_PLEASANTRY = re.compile(
    r"^(ok(ay)?|k|thanks?( you)?|thx|ty|hi|hello|hey|bye|cool|great|nice|sure|yes|no|yep|nope)"
    r"[\s!.?]*$",
    re.IGNORECASE,
)


def importance_for(role: str, content: str) -> float:
    """Heuristic importance of a message; see the module docstring for the formula."""
    score = ROLE_BASE_IMPORTANCE.get(role, 0.4)
    text = content.strip()
    words = len(text.split())
    if _SALIENT.search(text):
        score += 0.20
    if _NUMBER.search(text):
        score += 0.05
    if words >= 30:
        score += 0.10
    elif words >= 8:
        score += 0.05
    if words <= 3 and _PLEASANTRY.match(text):
        score -= 0.15
    return round(min(1.0, max(0.0, score)), 3)


@dataclass(frozen=True)
class ScoreWeights:
    similarity: float = 0.7
    importance: float = 0.2
    recency: float = 0.1
    half_life_hours: float = 168.0

    @property
    def total(self) -> float:
        total = self.similarity + self.importance + self.recency
        return total if total > 0 else 1.0


@dataclass(frozen=True)
class ScoreParts:
    similarity: float
    importance: float
    recency: float

    @property
    def score(self) -> float:
        return self.similarity + self.importance + self.recency


def recency_for(age_hours: float, half_life_hours: float) -> float:
    return float(0.5 ** (max(0.0, age_hours) / half_life_hours))


def weighted_parts(
    similarity: float, importance: float, recency: float, weights: ScoreWeights
) -> ScoreParts:
    """The weighted contributions of each signal (their sum is the score)."""
    return ScoreParts(
        similarity=weights.similarity * max(0.0, similarity) / weights.total,
        importance=weights.importance * importance / weights.total,
        recency=weights.recency * recency / weights.total,
    )


def final_score(
    similarity: float, importance: float, age_hours: float, weights: ScoreWeights
) -> ScoreParts:
    """The weighted parts of a hit's score from its raw signals."""
    recency = recency_for(age_hours, weights.half_life_hours)
    return weighted_parts(similarity, importance, recency, weights)
