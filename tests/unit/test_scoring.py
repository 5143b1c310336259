"""Importance heuristic and the ranking formula."""

from __future__ import annotations

import math

import pytest

from memory_layer.services.scoring import (
    ScoreWeights,
    final_score,
    importance_for,
    recency_for,
    weighted_parts,
)


@pytest.mark.parametrize(
    ("role", "expected"),
    [("user", 0.5), ("assistant", 0.35), ("system", 0.6), ("tool", 0.25)],
)
def test_role_sets_the_base_importance(role: str, expected: float) -> None:
    assert importance_for(role, "the sky looks grey") == expected


def test_stated_preference_is_more_important_than_small_talk() -> None:
    preference = importance_for("user", "I love Python programming")
    small_talk = importance_for("user", "thanks!")
    assert preference == pytest.approx(0.7)
    assert small_talk == pytest.approx(0.35)
    assert preference > importance_for("user", "the sky looks grey") > small_talk


def test_numbers_and_length_add_importance() -> None:
    assert importance_for("user", "the meeting moved to room 42") == pytest.approx(0.55)
    long_text = " ".join(["word"] * 30)
    assert importance_for("assistant", long_text) == pytest.approx(0.45)
    assert importance_for("assistant", " ".join(["word"] * 8)) == pytest.approx(0.40)


def test_every_bonus_together_stays_below_one() -> None:
    text = "Remember: my name is Ada, I am allergic to nuts, deadline 2026-12-01 " + "x " * 40
    assert importance_for("system", text) == pytest.approx(0.95)
    assert importance_for("tool", "ok") == pytest.approx(0.10)


def test_recency_halves_every_half_life() -> None:
    assert recency_for(0, 24) == 1.0
    assert recency_for(24, 24) == pytest.approx(0.5)
    assert recency_for(72, 24) == pytest.approx(0.125)
    assert recency_for(-5, 24) == 1.0  # clock skew never pushes recency above 1


def test_parts_add_up_to_a_score_in_unit_range() -> None:
    weights = ScoreWeights(similarity=0.7, importance=0.2, recency=0.1, half_life_hours=24)
    parts = final_score(similarity=0.8, importance=0.5, age_hours=24, weights=weights)
    assert parts.similarity == pytest.approx(0.56)
    assert parts.importance == pytest.approx(0.10)
    assert parts.recency == pytest.approx(0.05)
    assert parts.score == pytest.approx(0.71)
    assert 0.0 <= final_score(1.0, 1.0, 0, weights).score <= 1.0 + 1e-9


def test_weights_are_normalised_and_negative_similarity_floors_at_zero() -> None:
    weights = ScoreWeights(similarity=2, importance=1, recency=1, half_life_hours=10)
    parts = weighted_parts(similarity=-0.3, importance=1.0, recency=1.0, weights=weights)
    assert parts.similarity == 0.0
    assert parts.score == pytest.approx(0.5)
    zero = ScoreWeights(similarity=0, importance=0, recency=0)
    assert math.isfinite(weighted_parts(0.5, 0.5, 0.5, zero).score)
