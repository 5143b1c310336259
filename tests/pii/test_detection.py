"""PII detection measured on a labelled set: precision and recall per kind (docs/pii.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memory_layer.models.policy import PiiMode
from memory_layer.pii.service import KINDS, PiiRejected, find_pii, screen

DATASET = Path(__file__).parents[1] / "data" / "pii_sentences.jsonl"


def measure() -> dict[str, tuple[float, float, int]]:
    """kind -> (precision, recall, labelled findings): a finding counts when its kind and its
    exact text are labelled in the sentence."""
    rows = [json.loads(line) for line in DATASET.read_text().splitlines() if line.strip()]
    assert len(rows) >= 200
    assert sum(not row["pii"] for row in rows) >= 60  # look-alikes and plain sentences
    hits = dict.fromkeys(KINDS, 0)
    found_total = dict.fromkeys(KINDS, 0)
    labelled = dict.fromkeys(KINDS, 0)
    for row in rows:
        found = {(f.kind, row["text"][f.start:f.end]) for f in find_pii(row["text"])}
        wanted = {(item["kind"], item["text"]) for item in row["pii"]}
        for kind, _ in found:
            found_total[kind] += 1
        for kind, _ in wanted:
            labelled[kind] += 1
        for kind, _ in found & wanted:
            hits[kind] += 1
    return {
        kind: (hits[kind] / max(found_total[kind], 1), hits[kind] / labelled[kind], labelled[kind])
        for kind in KINDS
    }


@pytest.mark.parametrize("kind", KINDS)
def test_precision_and_recall_per_kind(kind: str) -> None:
    precision, recall, labelled = measure()[kind]
    assert labelled >= 20
    assert recall >= 0.95, f"{kind}: recall {recall:.3f}"
    assert precision >= 0.95, f"{kind}: precision {precision:.3f}"


def test_redact_replaces_each_finding_with_its_placeholder() -> None:
    text = (
        "Mail jane.doe@example.com or call (415) 555-2671; card 4111 1111 1111 1111, "
        "IBAN DE89 3704 0044 0532 0130 00, from 192.168.1.20, SSN 219-44-1234. Version 1.2.3.4."
    )
    result = screen(text, PiiMode.redact)
    assert result.content == (
        "Mail [EMAIL] or call [PHONE]; card [CARD], IBAN [IBAN], from [IP_ADDRESS], SSN [SSN]. "
        "Version 1.2.3.4."
    )
    assert result.kinds == list(KINDS)


def test_modes() -> None:
    text = "write to ann@example.com"
    assert screen(text, PiiMode.off).kinds == []
    assert screen(text, PiiMode.detect).content == text
    assert screen(text, PiiMode.detect).kinds == ["email"]
    with pytest.raises(PiiRejected) as raised:
        screen(text, PiiMode.reject, where="messages[2]")
    assert raised.value.code == "pii_rejected"
    assert raised.value.detail == {
        "message": "messages[2]: the content holds personal data (email); this tenant's PII mode "
        "is reject",
        "kinds": ["email"],
        "where": "messages[2]",
    }
    assert screen("nothing personal here", PiiMode.reject).kinds == []
