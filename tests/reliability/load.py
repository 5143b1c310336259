"""Write load against a served process: every answer recorded, to check afterwards that each write
the service acknowledged (a 2xx) is in the database, whole."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import dataclass, field

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

BATCH = 4  # messages per batch write: all stored or none


def content_of(client_message_id: str) -> str:
    """The text each message carries, derived from its id so the check can recompute it."""
    return f"{client_message_id} " + "remembered words " * 20


@dataclass
class WriteLoad:
    """Writers posting single messages and batches of one tenant until stopped."""

    url: str
    key: str
    tenant: str
    writers: int = 4
    acknowledged: list[str] = field(default_factory=list)  # client_message_ids answered 2xx
    statuses: Counter[int | str] = field(default_factory=Counter)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def _record(self, status: int | str) -> None:
        self.statuses[status] += 1

    async def _writer(self, number: int) -> None:
        async with httpx.AsyncClient(
            base_url=self.url, headers={"X-API-Key": self.key}, timeout=10
        ) as client:
            while not self.stop.is_set():
                step = next(self._ids)
                try:
                    if step % 3 == 2:
                        ids = [f"b{step}-{n}" for n in range(BATCH)]
                        response = await client.post("/v1/messages/batch", json={
                            "tenant_id": self.tenant,
                            "messages": [{"conversation_id": f"w{number}", "role": "user",
                                          "content": content_of(i), "client_message_id": i}
                                         for i in ids],
                        })
                    else:
                        ids = [f"m{step}"]
                        response = await client.post("/v1/messages", json={
                            "tenant_id": self.tenant, "conversation_id": f"w{number}",
                            "role": "user", "content": content_of(ids[0]),
                            "client_message_id": ids[0],
                        })
                except httpx.TransportError as exc:  # the process is gone, or the socket
                    self._record(type(exc).__name__)
                    await asyncio.sleep(0.05)
                    continue
                self._record(response.status_code)
                if 200 <= response.status_code < 300:
                    self.acknowledged.extend(ids)
                else:
                    await asyncio.sleep(0.02)

    async def acknowledged_count(self, at_least: int) -> bool:
        return len(self.acknowledged) >= at_least

    def start(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._writer(n)) for n in range(self.writers)]

    async def finish(self, tasks: list[asyncio.Task[None]]) -> None:
        self.stop.set()
        await asyncio.gather(*tasks)


async def check_stored(engine: AsyncEngine, tenant: str, acknowledged: list[str]) -> int:
    """Every acknowledged message is stored with its whole content; every batch is whole (all of
    its messages or none); no message is stored twice. Returns the messages stored."""
    async with engine.connect() as connection:
        rows = (await connection.execute(
            text("SELECT client_message_id, content FROM messages WHERE tenant_id = :t"),
            {"t": tenant},
        )).all()
    stored = {row.client_message_id: row.content for row in rows}
    assert len(stored) == len(rows), "a client_message_id stored twice"
    missing = [i for i in acknowledged if i not in stored]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
    torn = [i for i, content in stored.items() if content != content_of(i)]
    assert not torn, f"half-written messages: {torn[:5]}"
    batches = Counter(i.split("-")[0] for i in stored if i.startswith("b"))
    partial = {batch: n for batch, n in batches.items() if n != BATCH}
    assert not partial, f"batches stored in part: {partial}"
    return len(stored)
