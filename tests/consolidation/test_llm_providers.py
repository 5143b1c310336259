"""The two LLM providers against a local stand-in of their APIs: requests, answers, retries."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.consolidation.providers.base import Action, FactDraft, KnownFact, LanguageError, Turn
from memory_layer.consolidation.providers.gemini import GeminiLanguageProvider
from memory_layer.consolidation.providers.llm import ModelProvider
from memory_layer.consolidation.providers.openai_compatible import OpenAICompatibleProvider
from tests.consolidation.support import facts, say, worker_of
from tests.fixtures.app import AppClient
from tests.support.language_standin import VALID_API_KEY, LanguageStandIn, Reply

PORTO = {"statement": "The user lives in Porto.", "kind": "fact", "subject": "residence",
         "value": "porto", "confidence": 0.95}
BERLIN = {"statement": "The user now lives in Berlin.", "kind": "fact", "subject": "home_city",
          "value": "berlin", "confidence": 0.9}


class Script:
    """What the stand-in's model answers: extraction by turn, decisions by a function."""

    def __init__(self) -> None:
        self.extract: dict[str, list[Any]] = {}
        self.decide: Callable[[dict[str, Any]], dict[str, Any]] = lambda _: {"event": "ADD"}
        self.summary = "Ana moved from Porto to Berlin."

    def __call__(self, task: str, user: str) -> str:
        if task == "extract":
            return json.dumps({"facts": self.extract.get(user, [])})
        if task == "decide":
            return json.dumps(self.decide(json.loads(user)))
        return json.dumps({"summary": self.summary})


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def standin(script: Script) -> Iterator[LanguageStandIn]:
    with LanguageStandIn(script) as server:
        yield server


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(params=["gemini", "openai_compatible"])
async def provider(
    request: pytest.FixtureRequest, standin: LanguageStandIn
) -> AsyncIterator[tuple[ModelProvider, Sleeps]]:
    sleeps = Sleeps()
    made: ModelProvider
    if request.param == "gemini":
        made = GeminiLanguageProvider(api_key=VALID_API_KEY, model="gemini-standin",
                                      base_url=standin.url, max_retries=2, sleep=sleeps)
    else:
        made = OpenAICompatibleProvider(base_url=f"{standin.url}/v1", model="llama-standin",
                                        api_key=VALID_API_KEY, max_retries=2, sleep=sleeps)
    yield made, sleeps
    await made.close()


def turn(content: str) -> Turn:
    return Turn(id=uuid.uuid4(), role="user", content=content, created_at=datetime.now(UTC))


async def test_extraction_asks_for_json_and_reads_the_facts(
    provider: tuple[ModelProvider, Sleeps], standin: LanguageStandIn, script: Script
) -> None:
    model, _ = provider
    script.extract["I live in Porto."] = [PORTO, {"statement": "", "kind": "fact"}, "junk"]
    [draft] = await model.extract(turn("I live in Porto."))
    assert draft == FactDraft("The user lives in Porto.", "fact", "residence", "porto", 0.95)
    [call] = standin.calls
    assert call.task == "extract"
    assert call.user == "I live in Porto."
    assert call.api_key == VALID_API_KEY
    if call.api == "gemini":
        assert call.model == "gemini-standin"
        assert call.body["generationConfig"]["responseMimeType"] == "application/json"
    else:
        assert call.body["model"] == "llama-standin"
        assert call.body["response_format"] == {"type": "json_object"}


async def test_a_rate_limit_is_retried_after_retry_after(
    provider: tuple[ModelProvider, Sleeps], standin: LanguageStandIn, script: Script
) -> None:
    model, sleeps = provider
    script.extract["I live in Porto."] = [PORTO]
    standin.script(Reply(status=429, retry_after="7"), Reply(status=503))
    [draft] = await model.extract(turn("I live in Porto."))
    assert draft.subject == "residence"
    assert len(standin.calls) == 3
    assert sleeps[0] == 7.0  # the server's Retry-After
    assert 1.0 <= sleeps[1] <= 2.0  # the second step of back-off (2 s), half of it jittered


@pytest.mark.parametrize(
    ("reply", "kind", "calls"),
    [
        (Reply(status=503), "unavailable", 3),  # retried, then given up
        (Reply(status=404), "model", 1),
        (Reply(text="not json"), "bad_response", 1),
        (Reply(text='{"facts": "none"}'), "bad_response", 1),
    ],
)
async def test_failures_surface_classified(
    provider: tuple[ModelProvider, Sleeps], standin: LanguageStandIn, reply: Reply, kind: str,
    calls: int,
) -> None:
    model, _ = provider
    standin.script(reply, reply, reply)
    with pytest.raises(LanguageError) as raised:
        await model.extract(turn("I live in Porto."))
    assert raised.value.kind == kind
    assert len(standin.calls) == calls


async def test_a_wrong_key_is_an_auth_failure(standin: LanguageStandIn) -> None:
    for model in (
        GeminiLanguageProvider(api_key="wrong", base_url=standin.url, max_retries=2),
        OpenAICompatibleProvider(base_url=f"{standin.url}/v1", model="m", api_key="wrong",
                                 max_retries=2),
    ):
        with pytest.raises(LanguageError) as raised:
            await model.extract(turn("hi"))
        assert raised.value.kind == "auth"
        await model.close()
    assert len(standin.calls) == 2  # never retried


async def test_decisions_name_a_candidate_or_nothing(
    provider: tuple[ModelProvider, Sleeps], script: Script
) -> None:
    model, _ = provider
    porto = KnownFact(uuid.uuid4(), "The user lives in Porto.", "fact", "residence", "porto",
                      datetime.now(UTC))
    draft = FactDraft("The user now lives in Berlin.", subject="home_city", value="berlin")
    assert await model.decide(draft, []) is not None
    script.decide = lambda prompt: {"event": "UPDATE", "id": prompt["existing"][0]["id"]}
    decision = await model.decide(draft, [porto])
    assert decision is not None
    assert (decision.action, decision.target) == (Action.update, porto.id)
    script.decide = lambda _: {"event": "UPDATE", "id": str(uuid.uuid4())}  # made up
    decision = await model.decide(draft, [porto])
    assert decision is not None
    assert decision.target is None  # the rules decide instead


async def test_summaries_fold_new_turns_into_the_previous_one(
    provider: tuple[ModelProvider, Sleeps], standin: LanguageStandIn
) -> None:
    model, _ = provider
    summary = await model.summarize("Ana lives in Porto.", [turn("I moved to Berlin!")], 4)
    assert summary == "Ana moved from Porto to Berlin."
    [call] = standin.calls
    assert call.task == "summarize"
    assert "At most 4 sentences" in call.system
    assert call.user == "Previous summary:\nAna lives in Porto.\n\nNew turns:\nuser: I moved to Berlin!"


@pytest.mark.parametrize("api", ["gemini", "openai_compatible"])
async def test_the_worker_with_a_model_supersedes_what_the_model_says(
    client: AppClient, tenant: str, standin: LanguageStandIn, script: Script, api: str,
    db_engine: AsyncEngine,
) -> None:
    """Subjects the model names differently (residence, home_city) still supersede: the model
    decides UPDATE on the candidate search found."""
    model: ModelProvider
    if api == "gemini":
        model = GeminiLanguageProvider(api_key=VALID_API_KEY, base_url=standin.url,
                                       sleep=Sleeps())
    else:
        model = OpenAICompatibleProvider(base_url=f"{standin.url}/v1", model="m",
                                         api_key=VALID_API_KEY, sleep=Sleeps())
    script.extract = {"I live in Porto.": [PORTO], "Guess what, Berlin is home now!": [BERLIN]}
    script.decide = lambda prompt: (
        {"event": "UPDATE", "id": prompt["existing"][0]["id"]} if prompt["existing"]
        else {"event": "ADD"}
    )
    worker = worker_of(client, model)
    await say(client, tenant, "I live in Porto.")
    await say(client, tenant, "Guess what, Berlin is home now!")

    standin.script(Reply(status=503), Reply(status=503), Reply(status=503), Reply(status=503))
    outcome = await worker.run_once(tenant)  # the model is down: nothing is lost
    assert (outcome.done, outcome.retrying) == (0, 2)
    async with db_engine.begin() as connection:
        await connection.execute(text(
            "UPDATE messages SET consolidation_next_attempt_at = now() WHERE tenant_id = :t"),
            {"t": tenant})
    assert await worker.drain(tenant) == 2

    [current] = await facts(client, tenant)
    assert current["content"] == "The user now lives in Berlin."
    assert current["metadata"]["extracted_by"] == model.name
    everything = await facts(client, tenant, include_superseded="true")
    [old] = [f for f in everything if f["fact_id"] != current["fact_id"]]
    assert old["content"] == "The user lives in Porto."
    assert old["superseded_by"] == current["fact_id"]
    decide = [call for call in standin.calls if call.task == "decide"]
    assert "The user lives in Porto." in decide[-1].user  # the candidate search found
    await model.close()
