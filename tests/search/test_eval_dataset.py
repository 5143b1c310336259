"""Structural checks of the hand-written retrieval evaluation set in scripts/data/eval_conversations.json."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

DATASET = Path(__file__).resolve().parents[2] / "scripts" / "data" / "eval_conversations.json"
KINDS = ("single_fact", "multi_hop", "temporal", "paraphrase", "exact")
ROLES = {"user", "assistant"}


def _parse_utc(value: str) -> datetime:
    assert value.endswith("Z"), f"date is not UTC: {value}"
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() is not None
    return parsed


@pytest.fixture(scope="module")
def dataset() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DATASET.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def turn_ids_by_conversation(dataset: dict[str, Any]) -> dict[str, set[str]]:
    return {
        conv["conversation_id"]: {turn["turn_id"] for turn in conv["turns"]}
        for conv in dataset["conversations"]
    }


def test_top_level_fields(dataset: dict[str, Any]) -> None:
    assert dataset["name"] == "memory-layer-eval-v1"
    assert isinstance(dataset["description"], str)
    assert dataset["description"].strip()
    assert isinstance(dataset["conversations"], list)
    assert isinstance(dataset["questions"], list)


def test_enough_long_multi_session_conversations(dataset: dict[str, Any]) -> None:
    conversations = dataset["conversations"]
    assert len(conversations) >= 3
    ids = [conv["conversation_id"] for conv in conversations]
    assert len(ids) == len(set(ids))
    for conv in conversations:
        assert len(conv["turns"]) >= 100, conv["conversation_id"]
        assert len({turn["session"] for turn in conv["turns"]}) >= 3, conv["conversation_id"]
        assert conv["speakers"]


def test_turn_ids_are_unique(dataset: dict[str, Any]) -> None:
    all_ids = [turn["turn_id"] for conv in dataset["conversations"] for turn in conv["turns"]]
    duplicates = [turn_id for turn_id, count in Counter(all_ids).items() if count > 1]
    assert not duplicates


def test_turns_are_well_formed(dataset: dict[str, Any]) -> None:
    for conv in dataset["conversations"]:
        speakers = set(conv["speakers"])
        for turn in conv["turns"]:
            assert turn["role"] in ROLES, turn["turn_id"]
            assert turn["speaker"] in speakers, turn["turn_id"]
            assert isinstance(turn["session"], int)
            assert isinstance(turn["text"], str)
            assert turn["text"].strip(), turn["turn_id"]


def test_dates_and_sessions_increase_within_a_conversation(dataset: dict[str, Any]) -> None:
    for conv in dataset["conversations"]:
        dates = [_parse_utc(turn["date"]) for turn in conv["turns"]]
        increasing = all(earlier < later for earlier, later in zip(dates, dates[1:], strict=False))
        assert increasing, conv["conversation_id"]
        sessions = [turn["session"] for turn in conv["turns"]]
        assert sessions == sorted(sessions), conv["conversation_id"]


def test_enough_questions_of_every_kind(dataset: dict[str, Any]) -> None:
    questions = dataset["questions"]
    assert len(questions) >= 60
    kinds = Counter(question["kind"] for question in questions)
    assert set(kinds) <= set(KINDS)
    for kind in KINDS:
        assert kinds[kind] >= 10, kind
    question_ids = [question["question_id"] for question in questions]
    assert len(question_ids) == len(set(question_ids))


def test_every_conversation_has_questions(dataset: dict[str, Any]) -> None:
    asked = {question["conversation_id"] for question in dataset["questions"]}
    assert asked == {conv["conversation_id"] for conv in dataset["conversations"]}


def test_evidence_exists_in_the_question_conversation(
    dataset: dict[str, Any], turn_ids_by_conversation: dict[str, set[str]]
) -> None:
    for question in dataset["questions"]:
        assert question["question"].strip(), question["question_id"]
        conversation_turns = turn_ids_by_conversation[question["conversation_id"]]
        evidence = question["evidence"]
        assert evidence, question["question_id"]
        assert len(evidence) == len(set(evidence)), question["question_id"]
        missing = [turn_id for turn_id in evidence if turn_id not in conversation_turns]
        assert not missing, (question["question_id"], missing)


def test_multi_hop_questions_cite_several_turns(dataset: dict[str, Any]) -> None:
    for question in dataset["questions"]:
        if question["kind"] == "multi_hop":
            assert len(question["evidence"]) >= 2, question["question_id"]
