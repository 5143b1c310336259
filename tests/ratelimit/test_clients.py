"""The project's own clients (scripts/load_test.py, scripts/eval_retrieval.py, `memory-layer
import --url`, through kit/client.py) wait out a 429 as its Retry-After says and send again,
instead of failing."""

from __future__ import annotations

import importlib.util
import io
import json
import random
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from memory_layer.cli.transfer import import_over_http
from memory_layer.config import Settings
from memory_layer.kit.client import RetryCount, send
from tests.fixtures.app import ADMIN_KEY, SERVICE_KEY, running_client
from tests.fixtures.tenants import new_tenant

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


async def test_send_waits_as_long_as_retry_after_says_then_gives_the_last_answer(
    settings_factory: Callable[..., Settings],
) -> None:
    waits: list[float] = []

    async def recorded(seconds: float) -> None:
        waits.append(seconds)

    tenant = new_tenant()
    settings = settings_factory(tenant_rate_limit="2/minute")
    async with running_client(settings, headers={"X-API-Key": SERVICE_KEY}) as client:
        params = {"tenant_id": tenant}
        first = [await send(client, "GET", "/v1/stats", params=params) for _ in range(2)]
        count = RetryCount()
        last = await send(
            client, "GET", "/v1/stats", params=params, attempts=3, count=count, sleep=recorded,
            max_wait=90,
        )
        capped: list[float] = []

        async def recorded_capped(seconds: float) -> None:
            capped.append(seconds)

        await send(
            client, "GET", "/v1/stats", params=params, attempts=2, sleep=recorded_capped,
            max_wait=0.5,
        )

    assert [r.status_code for r in first] == [200, 200]
    assert last.status_code == 429  # patience ran out: the caller sees the last answer
    assert count.waited == {429: 2}
    assert len(waits) == 2
    # The waits are the service's Retry-After (up to a minute for a per-minute limit) ...
    assert all(1 <= wait <= 60 for wait in waits)
    # ... capped by max_wait.
    assert capped == [0.5]


async def test_the_load_test_waits_out_the_tenant_limit_and_every_request_succeeds(
    settings_factory: Callable[..., Settings],
) -> None:
    load_test = load_script("load_test")
    tenant = new_tenant()
    settings = settings_factory(tenant_rate_limit="4/second")
    results = load_test.Results()
    rng = random.Random(3)
    async with running_client(settings, headers={"X-API-Key": SERVICE_KEY}) as client:
        for operation in ["write", "search"] * 6:
            await load_test.one(client, operation, tenant, rng, results, max_retries=10)
        stats = (await send(client, "GET", "/v1/stats", params={"tenant_id": tenant})).json()

    assert {op: dict(codes) for op, codes in results.statuses.items()} == {
        "write": {200: 6}, "search": {200: 6}
    }
    waited = sum(count.waited.get(429, 0) for count in results.retried.values())
    assert waited >= 1
    assert stats["messages"] == 6  # a retried write is stored once
    text, _ = load_test.summary(results, 1.0, "limited")
    assert "100.0% succeeded" in text
    assert f"{waited} answers 429 waited out" in text


async def test_the_evaluation_loads_and_asks_through_a_tenant_limit(
    settings_factory: Callable[..., Settings],
) -> None:
    harness = load_script("eval_retrieval")
    data = harness.load_dataset(harness.DEFAULT_DATASET, max_turns=6)
    data = {**data, "conversations": data["conversations"][:2]}
    turns = {t["turn_id"] for c in data["conversations"] for t in c["turns"]}
    data["questions"] = [q for q in data["questions"] if set(q["evidence"]) <= turns][:3]
    tenant = new_tenant()
    settings = settings_factory(tenant_rate_limit="5/second")
    async with running_client(settings, headers={"X-API-Key": SERVICE_KEY}) as client:
        stored = await harness.ingest(client, data, tenant, concurrency=4)
        report = await harness.evaluate(client, data, tenant, modes=("keyword", "vector"))
        stats = (await send(client, "GET", "/v1/stats", params={"tenant_id": tenant})).json()

    assert stored == len(turns) >= 10
    assert stats["messages"] == stored
    assert report.questions == len(data["questions"])


async def test_an_import_over_http_waits_out_a_429_and_sends_the_whole_file_again(
    settings_factory: Callable[..., Settings],
) -> None:
    """`memory-layer import --url`'s request: refused while the tenant is over its limit, sent
    again after the Retry-After wait, from the first line."""
    tenant = new_tenant()
    body = b"".join(
        json.dumps({
            "message_id": str(uuid.uuid4()), "conversation_id": "c", "role": "user",
            "content": f"line {n}", "importance": 0.5, "created_at": "2026-01-31T12:00:00Z",
        }).encode() + b"\n"
        for n in range(4)
    )
    waits: list[float] = []
    settings = settings_factory(tenant_rate_limit="off")
    async with running_client(settings, headers={"X-API-Key": SERVICE_KEY}) as client:
        admin = {"X-API-Key": ADMIN_KEY}
        policy = f"/v1/admin/tenants/{tenant}/policy"
        assert (await client.put(policy, json={"rate_limit": "1/minute"}, headers=admin)).is_success
        used = await client.get("/v1/stats", params={"tenant_id": tenant})

        async def wait_then_lift(seconds: float) -> None:
            # The wait the service asked for; meanwhile an operator lifts the tenant's limit.
            waits.append(seconds)
            await client.put(policy, json={"rate_limit": ""}, headers=admin)

        report = await import_over_http(client, tenant, io.BytesIO(body), sleep=wait_then_lift)
        stats = (await send(client, "GET", "/v1/stats", params={"tenant_id": tenant})).json()

    assert used.status_code == 200
    assert stats.get("messages") == 4, stats
    assert len(waits) == 1
    assert 1 <= waits[0] <= 60
    assert report["lines_read"] == 4
    assert report["stored"] == 4
    assert stats["messages"] == 4


def test_the_load_test_runs_with_no_options_against_make_run_in_a_tenant_of_its_own() -> None:
    load_test = load_script("load_test")
    first, second = load_test.parse_args([]), load_test.parse_args([])
    assert first.base_url == "http://127.0.0.1:8000"
    assert first.tenant_id.startswith("load-")
    assert first.tenant_id != second.tenant_id
    assert first.max_retries == 5
    chosen = load_test.parse_args(["--base-url", "http://h:1", "--tenant-id", "t", "--max-retries", "0"])
    assert (chosen.base_url, chosen.tenant_id, chosen.max_retries) == ("http://h:1", "t", 0)
