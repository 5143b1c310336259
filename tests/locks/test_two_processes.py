"""Locks across two `memory-layer serve` processes on one database: 20 contenders never hold a
lock at once, and a holder that crashes (killed) frees its lock at its lease's end."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
import pytest

from tests.contract.served import Served, bound_key, serve_env, start
from tests.fixtures.tenants import new_tenant
from tests.support.cli import stop

CONTENDERS = 20
ROUNDS = 2


@pytest.fixture(scope="module")
def tenant_and_key(database_url: str) -> tuple[str, str]:
    tenant = new_tenant()
    return tenant, bound_key(database_url, tenant)


@pytest.fixture(scope="module")
def two_apis(database_url: str) -> Iterator[list[Served]]:
    env = serve_env(database_url)
    # Started side by side: each takes seconds to come up.
    with ThreadPoolExecutor(max_workers=2) as pool:
        starting = [pool.submit(start, env) for _ in range(2)]
        apis = [future.result() for future in starting]
    try:
        yield apis
    finally:
        for api in apis:
            if api.process.poll() is None:
                stop(api.process)
            api.log.unlink(missing_ok=True)


async def test_twenty_contenders_over_two_processes_never_overlap(
    two_apis: list[Served], tenant_and_key: tuple[str, str]
) -> None:
    _, key = tenant_and_key
    clients = [
        httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": key}, timeout=60)
        for api in two_apis
    ]
    inside = 0
    most_inside = 0
    # The protected resource: a fencing number lower than the highest seen would be refused.
    grants: list[int] = []

    async def contender(index: int) -> None:
        nonlocal inside, most_inside
        client = clients[index % 2]  # half through each process
        for _ in range(ROUNDS):
            response = await client.post(
                "/v1/locks/shared", json={"ttl_seconds": 30, "wait_seconds": 50}
            )
            assert response.status_code == 201, response.text
            grant = response.json()
            inside += 1
            most_inside = max(most_inside, inside)
            assert not grants or grant["fencing_token"] > grants[-1]
            grants.append(grant["fencing_token"])
            await asyncio.sleep(0.005)  # hold it across an await: an overlap would show here
            inside -= 1
            released = await client.delete(
                "/v1/locks/shared", headers={"Lock-Token": grant["token"]}
            )
            assert released.status_code == 204, released.text

    try:
        await asyncio.wait_for(
            asyncio.gather(*(contender(index) for index in range(CONTENDERS))), timeout=120
        )
    finally:
        for client in clients:
            await client.aclose()
    assert most_inside == 1
    assert len(grants) == CONTENDERS * ROUNDS
    assert grants == list(range(1, CONTENDERS * ROUNDS + 1))


async def test_a_crashed_holders_lock_frees_at_its_lease_end(
    two_apis: list[Served], tenant_and_key: tuple[str, str]
) -> None:
    _, key = tenant_and_key
    doomed = two_apis[1]  # the module's last test: the process is not needed after it
    async with httpx.AsyncClient(base_url=doomed.url, headers={"X-API-Key": key}, timeout=30) as client:
        held = await client.post("/v1/locks/crash", json={"ttl_seconds": 1.5})
    assert held.status_code == 201, held.text
    doomed.process.kill()  # no release, no shutdown: a crash
    doomed.process.wait(timeout=30)
    grant = held.json()
    async with httpx.AsyncClient(
        base_url=two_apis[0].url, headers={"X-API-Key": key}, timeout=30
    ) as client:
        assert (await client.post("/v1/locks/crash", json={"ttl_seconds": 5})).status_code == 423
        waited = await client.post("/v1/locks/crash", json={"ttl_seconds": 5, "wait_seconds": 20})
    assert waited.status_code == 201, waited.text
    taken = waited.json()
    assert taken["fencing_token"] == grant["fencing_token"] + 1
    assert datetime.fromisoformat(taken["acquired_at"]) >= datetime.fromisoformat(
        grant["expires_at"]
    )
