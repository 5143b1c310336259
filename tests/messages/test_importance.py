"""The importance heuristic of new messages."""

from __future__ import annotations

import pytest

from memory_layer.messages.importance import importance_for


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
