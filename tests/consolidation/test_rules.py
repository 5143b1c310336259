"""The offline rules: what extraction finds in a user turn, and how a draft is reconciled."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from memory_layer.consolidation.providers.base import Action, FactDraft, KnownFact
from memory_layer.consolidation.rules import decide_by_rules, extract_facts


@pytest.mark.parametrize(
    ("turn", "expected"),
    [
        ("Hi! My name is Ana Souza and I live in Porto.",
         [("The user's name is Ana Souza.", "name"), ("The user lives in Porto.", "residence")]),
        ("I moved to Berlin last month.", [("The user lives in Berlin.", "residence")]),
        ("I work as a nurse at the Charité.", [("The user works as a nurse.", "occupation")]),
        ("I work for Siemens", [("The user works at Siemens.", "employer")]),
        ("I'm allergic to peanuts, so be careful.",
         [("The user is allergic to peanuts.", "allergy:peanut")]),
        ("I prefer window seats over aisle seats.",
         [("The user prefers window seats over aisle seats.", "prefers:seat")]),
        ("I hate olives and I love figs",
         [("The user dislikes olives.", "opinion:olive"), ("The user likes figs.", "opinion:fig")]),
        ("My favourite band is Radiohead.", [("The user's favourite band is Radiohead.",
                                              "favourite:band")]),
        ("Please remember that my daughter's recital is on June 3rd.",
         [("The user's daughter's recital is on June 3rd.", None)]),
        ("Remember that I live in Lisbon now", [("The user lives in Lisbon.", "residence")]),
    ],
)
def test_salient_statements_become_third_person_facts(
    turn: str, expected: list[tuple[str, str | None]]
) -> None:
    assert [(d.statement, d.subject) for d in extract_facts(turn)] == expected


@pytest.mark.parametrize(
    "turn",
    ["Do you know where I live?", "I like it", "I would like to book a table", "thanks!",
     "Do you like jazz? I love it.", "The weather in Porto is lovely"],
)
def test_questions_chit_chat_and_empty_objects_give_nothing(turn: str) -> None:
    assert extract_facts(turn) == []


def known(statement: str, subject: str | None, value: str | None,
          similarity: float | None = None) -> KnownFact:
    return KnownFact(id=uuid.uuid4(), statement=statement, kind="fact", subject=subject,
                     value=value, created_at=datetime.now(UTC), similarity=similarity)


def test_same_subject_same_value_is_a_duplicate_and_a_new_value_an_update() -> None:
    porto = known("The user lives in Porto.", "residence", "porto")
    other = known("The user likes figs.", "opinion:fig", "likes")
    again = FactDraft("The user lives in Porto.", subject="residence", value="porto")
    moved = FactDraft("The user lives in Berlin.", subject="residence", value="berlin")
    assert decide_by_rules(again, [other, porto], 0.9).action is Action.none
    decision = decide_by_rules(moved, [other, porto], 0.9)
    assert (decision.action, decision.target) == (Action.update, porto.id)


def test_statements_without_subject_are_deduplicated_by_text_and_vector() -> None:
    note = known("The user's recital is on June 3rd.", None, None, similarity=0.95)
    same_text = FactDraft("the user's recital is on June 3rd", subject=None)
    assert decide_by_rules(same_text, [note], 0.99).action is Action.none
    similar = FactDraft("The user's recital takes place June 3rd.", subject=None)
    assert decide_by_rules(similar, [note], 0.92).action is Action.none
    assert decide_by_rules(similar, [note], 0.97).action is Action.add
    assert decide_by_rules(FactDraft("The user likes figs.", subject="opinion:fig"), [],
                           0.9).action is Action.add
