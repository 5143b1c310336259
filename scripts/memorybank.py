"""MemoryBank's English chats as an evaluation dataset (docs/evaluation.md, "Real chats: MemoryBank").

The chats and probing questions are read from their own folder (by default
../shared/data/memorybank-en beside the repository; they are not copied into the project), the
evidence turns from scripts/data/memorybank_labels.json, labelled for this project. One
conversation per person; each exchange is two turns, the person's query (role user, user_id the
person's name, "John_Zhang") and the companion's response (role assistant), dated on the exchange's day, two
minutes apart in order.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "memorybank-en"
LABELS = ROOT / "scripts" / "data" / "memorybank_labels.json"


def slug(name: str) -> str:
    return re.sub(r"[^a-z]+", "-", name.lower()).strip("-")


def load_memorybank(source: Path = DEFAULT_SOURCE, labels: Path = LABELS) -> dict[str, Any]:
    """The chats as a dataset in eval_retrieval.py's format, with the labelled questions."""
    chats: dict[str, Any] = json.loads((source / "memory_bank_en.json").read_text())
    probes: dict[str, list[str]] = {}
    for line in (source / "probing_questions_en.jsonl").read_text().splitlines():
        if line.strip():
            probes.update({name.strip(): texts for name, texts in json.loads(line).items()})
    conversations: list[dict[str, Any]] = []
    for raw_name, chat in chats.items():
        name = raw_name.strip()
        user_id = name.replace(" ", "_")  # a user_id has no spaces
        turns: list[dict[str, Any]] = []
        for day_number, (day, exchanges) in enumerate(sorted(chat["history"].items()), start=1):
            start = datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC)
            start += timedelta(hours=19)
            for number, exchange in enumerate(exchanges, start=1):
                base = f"{slug(name)}-d{day_number:02d}-e{number:02d}"
                at = start + timedelta(minutes=4 * (number - 1))
                turns.append({"turn_id": f"{base}-u", "session": day_number, "speaker": user_id,
                              "role": "user", "text": exchange["query"],
                              "date": at.isoformat().replace("+00:00", "Z")})
                turns.append({"turn_id": f"{base}-a", "session": day_number, "speaker": "companion",
                              "role": "assistant", "text": exchange["response"],
                              "date": (at + timedelta(minutes=2)).isoformat().replace("+00:00", "Z")})
        conversations.append({"conversation_id": f"mb-{slug(name)}", "speakers": [user_id, "companion"],
                              "turns": turns})
    labelled = json.loads(labels.read_text())
    turn_ids = {t["turn_id"] for c in conversations for t in c["turns"]}
    questions: list[dict[str, Any]] = []
    for item in labelled["questions"]:
        missing = set(item["evidence"]) - turn_ids
        if missing:
            raise ValueError(f"{item['question_id']}: no such turns {sorted(missing)}")
        questions.append({
            "question_id": item["question_id"],
            "conversation_id": f"mb-{slug(item['person'])}",
            "kind": item["kind"],
            "question": probes[item["person"]][item["index"]].strip().strip('"').strip(),
            "evidence": item["evidence"],
        })
    return {"name": labelled["name"], "description": labelled["source"],
            "conversations": conversations, "questions": questions}
