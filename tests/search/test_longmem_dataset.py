"""The generated long-conversation evaluation set: the script writes exactly the shipped file, and
every question points at turns of its own conversation."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT / "scripts" / "data" / "longmem_conversations.json"
KINDS = {"single_fact", "multi_hop", "temporal", "open_domain", "adversarial"}


def load_generator() -> ModuleType:
    path = ROOT / "scripts" / "make_longmem_eval.py"
    spec = importlib.util.spec_from_file_location("make_longmem_eval", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_longmem_eval"] = module
    spec.loader.exec_module(module)
    return module


def test_the_shipped_file_is_what_the_script_writes() -> None:
    shipped: dict[str, Any] = json.loads(DATASET.read_text(encoding="utf-8"))
    generated: dict[str, Any] = load_generator().generate(seed=14, count=5, heldout=2, sessions=22)
    assert json.loads(json.dumps(generated)) == shipped


def test_long_dated_conversations_with_every_kind_in_both_splits() -> None:
    data: dict[str, Any] = json.loads(DATASET.read_text(encoding="utf-8"))
    turns = {t["turn_id"]: (c["conversation_id"], t) for c in data["conversations"] for t in c["turns"]}
    for conversation in data["conversations"]:
        assert len(conversation["turns"]) >= 300
        assert len({t["session"] for t in conversation["turns"]}) >= 10
        dates = [t["date"] for t in conversation["turns"]]
        assert dates == sorted(dates)
        assert {t["speaker"] for t in conversation["turns"]} == set(conversation["speakers"])
    assert {(q["kind"], q["split"]) for q in data["questions"]} == {
        (kind, split) for kind in KINDS for split in ("dev", "heldout")
    }
    assert len({q["question_id"] for q in data["questions"]}) == len(data["questions"])
    hops = Counter(len(q["evidence"]) for q in data["questions"] if q["kind"] == "multi_hop")
    assert min(hops) >= 2
    for question in data["questions"]:
        assert question["evidence"]
        for turn_id in question["evidence"]:
            assert turns[turn_id][0] == question["conversation_id"]
