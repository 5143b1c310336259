"""Retrieval quality with the real local model: hybrid beats both single modes where each is weak.

Also runs the evaluation harness (scripts/eval_retrieval.py) on one conversation of the shipped
dataset through the in-process API.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from memory_layer.config import Settings
from tests.fixtures.app import ADMIN_KEY, running_client
from tests.fixtures.tenants import new_tenant

ROOT = Path(__file__).resolve().parents[2]


def load_harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("eval_retrieval", ROOT / "scripts" / "eval_retrieval.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["eval_retrieval"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
async def local_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    from tests.fixtures.app import make_settings

    settings: Settings = make_settings(database_url, embedding_provider="local")
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        yield client


async def store(client: httpx.AsyncClient, tenant: str, texts: list[str]) -> dict[str, str]:
    ids = {}
    for content in texts:
        response = await client.post(
            "/v1/messages",
            json={"tenant_id": tenant, "conversation_id": "c", "role": "user", "content": content},
        )
        assert response.status_code == 200, response.text
        ids[response.json()["message_id"]] = content
    return ids


async def top(client: httpx.AsyncClient, tenant: str, query: str, mode: str, k: int) -> list[str]:
    response = await client.post(
        "/v1/memory/search", json={"tenant_id": tenant, "query": query, "mode": mode, "top_k": k}
    )
    assert response.status_code == 200, response.text
    return [item["content"] for item in response.json()["items"]]


# Look-alike codes: the model sees their word pieces as near neighbours, full text does not.
BOOKINGS = [
    "The ferry booking reference is KX-4471-B, departing at 7am",
    "The hotel booking reference is KX-4417-B for three nights",
    "The car rental booking reference is XK-4471-D, pick-up at the port",
    "The museum tickets booking reference is KX-4711-E for Saturday",
    "The train booking reference is KK-4471-8, coach 4",
    "The restaurant booking reference is KX-1447-B at 8pm",
    "My niece turns seven on Saturday and we are throwing her a party",
    "I need to renew my passport before the summer",
]


async def test_hybrid_finds_the_rare_token_and_the_paraphrase(
    local_client: httpx.AsyncClient,
) -> None:
    tenant = new_tenant()
    await store(local_client, tenant, BOOKINGS)
    code_query = "booking KX-4471-B"
    code_answer = BOOKINGS[0]
    assert code_answer not in await top(local_client, tenant, code_query, "vector", 1)
    assert (await top(local_client, tenant, code_query, "keyword", 1)) == [code_answer]
    assert (await top(local_client, tenant, code_query, "hybrid", 1)) == [code_answer]

    paraphrase = "when is the birthday celebration for my sister's daughter"
    party = BOOKINGS[6]
    assert party not in await top(local_client, tenant, paraphrase, "keyword", 3)
    assert (await top(local_client, tenant, paraphrase, "vector", 1)) == [party]
    assert (await top(local_client, tenant, paraphrase, "hybrid", 1)) == [party]


async def test_the_harness_scores_each_mode_on_a_conversation(
    local_client: httpx.AsyncClient,
) -> None:
    harness = load_harness()
    data: dict[str, Any] = harness.load_dataset(harness.DEFAULT_DATASET, ["conv-01"])
    assert len(data["questions"]) >= 20
    tenant = new_tenant()
    stored = await harness.ingest(local_client, data, tenant)
    assert stored == len(data["conversations"][0]["turns"])
    report = await harness.evaluate(local_client, data, tenant)
    assert report.questions == len(data["questions"])
    for mode, values in report.recall.items():
        assert set(values) == {1, 5, 10, 20}
        assert all(0.0 <= v <= 1.0 for v in values.values()), mode
        assert values[1] <= values[5] <= values[10] <= values[20], mode
    assert report.recall["hybrid"][10] >= report.recall["vector"][10]
    assert report.recall["hybrid"][10] >= report.recall["keyword"][10]
    assert report.recall["hybrid"][10] > 0.5
    rendered: str = harness.render(report, "test")
    assert "| hybrid |" in rendered


def test_the_dataset_cut_keeps_only_answerable_questions() -> None:
    harness = load_harness()
    cut: dict[str, Any] = harness.load_dataset(harness.DEFAULT_DATASET, ["conv-02"], max_turns=40)
    turn_ids = {t["turn_id"] for c in cut["conversations"] for t in c["turns"]}
    assert len(turn_ids) == 40
    assert cut["questions"]
    assert all(set(q["evidence"]) <= turn_ids for q in cut["questions"])


