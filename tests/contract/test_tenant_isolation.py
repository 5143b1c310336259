"""Tenant isolation as a property: random sequences of writes, reads, searches, edits, deletes,
listings, prompt contexts and exports by two tenant-bound keys, against `memory-layer serve`.
Neither ever sees or changes the other's data, and each always sees exactly its own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from tests.contract.served import Served, bound_key, serve_env, serving
from tests.fixtures.tenants import new_tenant

# Few words, shared by both tenants: a search for one would find the other's messages if the
# wall leaked.
WORDS = st.sampled_from(["apple", "river", "orange", "stone", "cloud"])
ACTORS = st.sampled_from([0, 1])


class Wall(RuleBasedStateMachine):
    served: Served
    keys: tuple[str, str]
    tenants: tuple[str, str]

    messages = Bundle("messages")

    @initialize()
    def clients(self) -> None:
        self.http = [
            httpx.Client(base_url=self.served.url, headers={"X-API-Key": key}, timeout=30)
            for key in self.keys
        ]
        # What each tenant holds: message id -> content.
        self.model: list[dict[str, str]] = [{}, {}]
        self.conversation = new_tenant()  # a fresh conversation name per run, used by both

    def teardown(self) -> None:
        for client in getattr(self, "http", []):
            client.close()

    def owner(self, message_id: str) -> int:
        return 0 if message_id in self.model[0] else 1

    @rule(target=messages, actor=ACTORS, word=WORDS, n=st.integers(0, 10**6))
    def write(self, actor: int, word: str, n: int) -> str:
        content = f"{word} note {n}"
        response = self.http[actor].post("/v1/messages", json={
            "conversation_id": self.conversation, "role": "user", "content": content,
        })
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["tenant_id"] == self.tenants[actor]
        self.model[actor][body["message_id"]] = content
        message_id: str = body["message_id"]
        return message_id

    @rule(actor=ACTORS, word=WORDS)
    def write_for_the_other(self, actor: int, word: str) -> None:
        response = self.http[actor].post("/v1/messages", json={
            "tenant_id": self.tenants[1 - actor], "conversation_id": self.conversation,
            "role": "user", "content": word,
        })
        assert response.status_code == 403, response.text

    @rule(actor=ACTORS, message_id=messages)
    def read(self, actor: int, message_id: str) -> None:
        response = self.http[actor].get(f"/v1/messages/{message_id}")
        if message_id in self.model[actor]:
            assert response.status_code == 200, response.text
            assert response.json()["content"] == self.model[actor][message_id]
        else:
            assert response.status_code == 404, response.text

    @rule(actor=ACTORS, message_id=messages)
    def read_naming_the_other(self, actor: int, message_id: str) -> None:
        response = self.http[actor].get(
            f"/v1/messages/{message_id}", params={"tenant_id": self.tenants[1 - actor]}
        )
        assert response.status_code == 403, response.text

    @rule(actor=ACTORS, word=WORDS, mode=st.sampled_from(["keyword", "hybrid"]))
    def search(self, actor: int, word: str, mode: str) -> None:
        response = self.http[actor].post("/v1/memory/search", json={
            "query": word, "mode": mode, "top_k": 100,
        })
        assert response.status_code == 200, response.text
        found = {item["message_id"] for item in response.json()["items"]}
        assert found <= set(self.model[actor]), found - set(self.model[actor])
        if mode == "keyword":
            expected = {i for i, content in self.model[actor].items() if word in content}
            assert found == expected

    @rule(actor=ACTORS, message_id=messages, word=WORDS)
    def edit(self, actor: int, message_id: str, word: str) -> None:
        content = f"{word} edited"
        response = self.http[actor].patch(f"/v1/messages/{message_id}", json={"content": content})
        if message_id in self.model[actor]:
            assert response.status_code == 200, response.text
            self.model[actor][message_id] = content
        else:
            assert response.status_code == 404, response.text

    @rule(actor=ACTORS, message_id=messages)
    def delete(self, actor: int, message_id: str) -> None:
        response = self.http[actor].delete(f"/v1/messages/{message_id}")
        if message_id in self.model[actor]:
            assert response.status_code == 200, response.text
            del self.model[actor][message_id]
        else:
            assert response.status_code == 404, response.text

    @rule(actor=ACTORS)
    def history(self, actor: int) -> None:
        response = self.http[actor].get(
            f"/v1/conversations/{self.conversation}/messages", params={"limit": 1000}
        )
        if not self.model[actor]:
            assert response.status_code in (200, 404), response.text
            if response.status_code == 200:
                assert response.json()["items"] == []
            return
        assert response.status_code == 200, response.text
        listed = {item["message_id"]: item["content"] for item in response.json()["items"]}
        assert listed == self.model[actor]

    @rule(actor=ACTORS, word=WORDS)
    def context(self, actor: int, word: str) -> None:
        response = self.http[actor].post("/v1/context", json={
            "conversation_id": self.conversation, "query": word, "max_turns": 200,
            "budget_tokens": 100_000,
        })
        assert response.status_code == 200, response.text
        body = response.json()
        turns = {item["message_id"]: item["content"] for item in body["turns"]["items"]}
        assert turns == self.model[actor]
        assert {item["message_id"] for item in body["memories"]["items"]} <= set(self.model[actor])
        response = self.http[actor].post("/v1/context", json={
            "tenant_id": self.tenants[1 - actor], "conversation_id": self.conversation,
        })
        assert response.status_code == 403, response.text

    @rule(actor=ACTORS)
    def list_messages(self, actor: int) -> None:
        response = self.http[actor].get("/v1/messages", params={"limit": 1000})
        assert response.status_code == 200, response.text
        listed = {item["message_id"]: item["content"] for item in response.json()["items"]}
        assert listed == self.model[actor]

    @rule(actor=ACTORS, message_id=messages)
    def related(self, actor: int, message_id: str) -> None:
        response = self.http[actor].get(
            f"/v1/messages/{message_id}/related", params={"top_k": 100}
        )
        if message_id in self.model[actor]:
            assert response.status_code == 200, response.text
            found = {item["message_id"] for item in response.json()["items"]}
            assert found <= set(self.model[actor]) - {message_id}, found
        else:
            assert response.status_code == 404, response.text

    @rule(actor=ACTORS, message_id=messages, outcome=st.sampled_from([None, "success", "failure"]))
    def use(self, actor: int, message_id: str, outcome: str | None) -> None:
        response = self.http[actor].post(
            f"/v1/messages/{message_id}/usage", json={"outcome": outcome} if outcome else {}
        )
        if message_id in self.model[actor]:
            assert response.status_code == 200, response.text
            assert response.json()["tenant_id"] == self.tenants[actor]
        else:
            assert response.status_code == 404, response.text

    @rule(actor=ACTORS, word=WORDS)
    def describe_conversation(self, actor: int, word: str) -> None:
        response = self.http[actor].patch(
            f"/v1/conversations/{self.conversation}", json={"title": word, "tags": [word]}
        )
        assert response.status_code == 200, response.text
        listing = self.http[actor].get("/v1/conversations", params={"tag": word})
        assert listing.status_code == 200, response.text
        titles = [item["title"] for item in listing.json()["items"]]
        assert titles == ([word] if self.model[actor] else [])

    @rule(actor=ACTORS)
    def export(self, actor: int) -> None:
        response = self.http[actor].get("/v1/export")
        assert response.status_code == 200, response.text
        lines = [json.loads(line) for line in response.text.splitlines() if line]
        assert {line["message_id"]: line["content"] for line in lines} == self.model[actor]

    @invariant()
    def counts(self) -> None:
        if not hasattr(self, "http"):
            return
        for actor in (0, 1):
            stats: dict[str, Any] = self.http[actor].get("/v1/stats").json()
            assert stats["tenant_id"] == self.tenants[actor]
            assert stats["messages"] == len(self.model[actor])


@pytest.fixture(scope="module")
def served(database_url: str) -> Iterator[Served]:
    with serving(serve_env(database_url)) as served:
        yield served


def test_two_tenants_never_see_or_change_each_others_data(
    served: Served, database_url: str
) -> None:
    runs = 0

    class Run(Wall):
        def __init__(self) -> None:
            nonlocal runs
            super().__init__()
            runs += 1
            # Fresh tenants per run: each run starts from empty memories.
            self.tenants = (new_tenant(), new_tenant())
            self.keys = (bound_key(database_url, self.tenants[0]),
                         bound_key(database_url, self.tenants[1]))

    Run.served = served
    Run.TestCase.settings = settings(
        max_examples=12, stateful_step_count=20, derandomize=True, deadline=None,
        database=None, suppress_health_check=list(HealthCheck),
    )
    Run.TestCase().runTest()
    assert runs >= 12
    print(f"\ntenant isolation: {runs} runs of up to 20 steps")
