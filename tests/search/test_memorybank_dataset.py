"""MemoryBank's chats with the project's evidence labels load as a valid evaluation dataset."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from memorybank import DEFAULT_SOURCE, LABELS, load_memorybank  # noqa: E402

# The data is read from beside the repository, never copied into it.
pytestmark = pytest.mark.skipif(
    not (DEFAULT_SOURCE / "memory_bank_en.json").exists(),
    reason=f"MemoryBank's files are not at {DEFAULT_SOURCE}",
)
USER_ID = re.compile(r"^[A-Za-z0-9_.:@/+=-]{1,128}$")  # what POST /v1/messages accepts


def test_the_labelled_chats_load() -> None:
    data = load_memorybank()
    conversations = data["conversations"]
    assert len(conversations) == 15
    assert sum(len(c["turns"]) for c in conversations) == 1132
    turn_ids = [t["turn_id"] for c in conversations for t in c["turns"]]
    assert len(turn_ids) == len(set(turn_ids))
    for conversation in conversations:
        turns = conversation["turns"]
        dates = [t["date"] for t in turns]
        assert dates == sorted(dates), conversation["conversation_id"]
        assert {t["role"] for t in turns} == {"user", "assistant"}
        assert all(USER_ID.match(t["speaker"]) for t in turns if t["role"] == "user")
    questions = data["questions"]
    assert len(questions) == 99
    assert Counter(q["kind"] for q in questions) == {
        "temporal": 36, "single_fact": 34, "context": 15, "open_domain": 11, "multi_hop": 3,
    }
    by_conversation = {c["conversation_id"]: {t["turn_id"] for t in c["turns"]} for c in conversations}
    for question in questions:
        assert question["evidence"], question["question_id"]
        assert set(question["evidence"]) <= by_conversation[question["conversation_id"]]
        assert question["question"].strip()


def test_the_labels_hold_no_text_of_the_chats() -> None:
    labels = json.loads(LABELS.read_text())
    assert labels["unanswerable"] == [
        {"person": "John Zhang", "index": 4,
         "why": "asks about 5 May, a day this chat has no session on"},
    ]
    for item in labels["questions"]:
        assert set(item) == {"question_id", "person", "index", "kind", "evidence"}
