"""Quality of the distilled profiles: precision and recall of each user's current facts.

Stores the labelled conversations of tests/data/consolidation_profiles.json (users stating facts,
repeating them and changing them) in a fresh tenant through the HTTP API of an in-process app,
runs the consolidation worker over them, reads every user's profile with
GET /v1/users/{user_id}/facts and compares it with the expected current profile:

    precision  current facts that match an expected fact / current facts
    recall     expected facts matched by a current fact / expected facts
    stale      current facts that still state a value the user changed (a missed supersession)

A fact matches an expected one when every regular expression of the expected fact matches its
statement (case-insensitively). Providers: `extractive`, and the LLM path (`openai_compatible`
and `gemini`) against the local language stand-in replaying the answers of
tests/data/consolidation_llm_answers.json.

Usage:
  python scripts/eval_consolidation.py [--provider extractive|openai_compatible|gemini|all]
      [--embedding-provider local|fake] [--write docs/evaluation.md]
MEMORY_DATABASE_URL selects the database (unset: the embedded one under a temporary directory).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchkit import write_block  # noqa: E402
from tests.support.language_standin import VALID_API_KEY, LanguageStandIn, Recorded  # noqa: E402

from memory_layer.app import create_app  # noqa: E402
from memory_layer.config import Settings  # noqa: E402
from memory_layer.consolidation.providers.base import LanguageProvider  # noqa: E402
from memory_layer.consolidation.providers.extractive import ExtractiveProvider  # noqa: E402
from memory_layer.consolidation.providers.gemini import GeminiLanguageProvider  # noqa: E402
from memory_layer.consolidation.providers.openai_compatible import (  # noqa: E402
    OpenAICompatibleProvider,
)
from memory_layer.consolidation.service import Distillers  # noqa: E402
from memory_layer.consolidation.worker import ConsolidationWorker  # noqa: E402

DATASET = ROOT / "tests" / "data" / "consolidation_profiles.json"
ANSWERS = ROOT / "tests" / "data" / "consolidation_llm_answers.json"
PROVIDERS = ("extractive", "openai_compatible", "gemini")


@dataclass
class Score:
    provider: str
    facts: int = 0
    matched_facts: int = 0
    expected: int = 0
    found: int = 0
    stale: int = 0
    superseded: int = 0
    misses: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.matched_facts / self.facts if self.facts else 0.0

    @property
    def recall(self) -> float:
        return self.found / self.expected if self.expected else 0.0


def matches(statement: str, patterns: list[str]) -> bool:
    return all(re.search(pattern, statement, re.IGNORECASE) for pattern in patterns)


def score_user(score: Score, user: dict[str, Any], current: list[str]) -> None:
    expected: list[dict[str, Any]] = user["expected"]
    score.facts += len(current)
    score.expected += len(expected)
    for statement in current:
        if any(matches(statement, fact["match"]) for fact in expected):
            score.matched_facts += 1
        else:
            score.wrong.append(f"{user['user_id']}: {statement}")
        if any(re.search(pattern, statement, re.IGNORECASE) for pattern in user["stale"]):
            score.stale += 1
    for fact in expected:
        if any(matches(statement, fact["match"]) for statement in current):
            score.found += 1
        else:
            score.misses.append(f"{user['user_id']}: {fact['fact']}")


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://eval.test", timeout=120
    ) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


async def store(client: httpx.AsyncClient, tenant: str, users: list[dict[str, Any]]) -> int:
    turns = 0
    for user in users:
        for index, conversation in enumerate(user["conversations"]):
            for role, content in conversation:
                body: dict[str, Any] = {"tenant_id": tenant, "role": role, "content": content,
                                        "conversation_id": f"{user['user_id']}-{index}"}
                if role == "user":
                    body["user_id"] = user["user_id"]
                response = await client.post("/v1/messages", json=body)
                response.raise_for_status()
                turns += 1
    return turns


def make_provider(name: str, standin: LanguageStandIn | None) -> LanguageProvider:
    if name == "extractive":
        return ExtractiveProvider()
    assert standin is not None
    if name == "gemini":
        return GeminiLanguageProvider(api_key=VALID_API_KEY, base_url=standin.url)
    return OpenAICompatibleProvider(base_url=f"{standin.url}/v1", model="recorded",
                                    api_key=VALID_API_KEY)


async def evaluate(client: httpx.AsyncClient, name: str, dataset: dict[str, Any],
                   standin: LanguageStandIn | None) -> dict[str, Score]:
    """The provider's score over all users and over each split of the set."""
    state = client.app.state  # type: ignore[attr-defined]
    tenant = f"eval-{uuid.uuid4().hex[:10]}"
    await store(client, tenant, dataset["users"])
    provider = make_provider(name, standin)
    worker = ConsolidationWorker(
        state.sessionmaker, Distillers(provider, state.embedder, state.settings, state.metrics)
    )
    await worker.drain(tenant)
    await provider.close()
    scores: dict[str, Score] = {}
    for user in dataset["users"]:
        response = await client.get(f"/v1/users/{user['user_id']}/facts",
                                    params={"tenant_id": tenant, "limit": 1000})
        response.raise_for_status()
        current = [item["content"] for item in response.json()["items"]]
        everything = await client.get(f"/v1/users/{user['user_id']}/facts",
                                      params={"tenant_id": tenant, "limit": 1000,
                                              "include_superseded": "true"})
        superseded = sum(1 for item in everything.json()["items"] if item["superseded_by"])
        for split in ("all", user.get("split", "all")):
            score = scores.setdefault(split, Score(provider=name))
            score_user(score, user, current)
            score.superseded += superseded
    return scores


def report(results: list[dict[str, Score]], dataset: dict[str, Any], embedding: str) -> str:
    users = dataset["users"]
    turns = sum(len(c) for u in users for c in u["conversations"])
    user_turns = sum(1 for u in users for c in u["conversations"] for t in c if t[0] == "user")
    expected = sum(len(u["expected"]) for u in users)
    splits: dict[str, int] = {}
    for user in users:
        splits[user.get("split", "all")] = splits.get(user.get("split", "all"), 0) + 1
    lines = [
        f"{len(users)} users, {turns} turns ({user_turns} by the users), {expected} "
        f"expected current facts (`tests/data/consolidation_profiles.json`; users by split: "
        + ", ".join(f"{name} {n}" for name, n in splits.items())
        + f"); embeddings: `{embedding}`. `python scripts/eval_consolidation.py --provider all`.",
        "",
        "| Provider | Users | Current facts | Precision | Recall | Stale (changed, not superseded) "
        "| Superseded |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for split, s in result.items():
            stale = sum(len(u["stale"]) for u in users if split in ("all", u.get("split")))
            label = s.provider if s.provider == "extractive" else f"{s.provider} (recorded answers)"
            lines.append(
                f"| `{label}` | {split} | {s.facts} | {s.precision:.2f} ({s.matched_facts}/{s.facts}) "
                f"| {s.recall:.2f} ({s.found}/{s.expected}) | {s.stale} of {stale} | "
                f"{s.superseded} |"
            )
    for s in (result["all"] for result in results):
        lines += ["", f"`{s.provider}` missed: " + ("; ".join(s.misses) or "nothing") + ".",
                  f"`{s.provider}` stored beyond the expected profile: "
                  + ("; ".join(s.wrong) or "nothing") + "."]
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", choices=[*PROVIDERS, "all"], default="all")
    parser.add_argument("--embedding-provider", choices=["local", "fake"], default="local")
    parser.add_argument("--write", type=Path, help="put the report in this markdown file")
    args = parser.parse_args()
    dataset = json.loads(DATASET.read_text())
    names = PROVIDERS if args.provider == "all" else (args.provider,)
    with tempfile.TemporaryDirectory(prefix="eval-consolidation-") as data_dir:
        Path(data_dir).chmod(0o777)  # the embedded server runs as its own user
        settings = Settings(
            data_dir=Path(data_dir), embedding_provider=args.embedding_provider,
            worker_enabled=False, global_rate_limit="off", tenant_rate_limit="off",
        )
        recorded = Recorded(ANSWERS)
        scores: list[dict[str, Score]] = []
        with LanguageStandIn(recorded) as standin:
            async with app_client(settings) as client:
                for name in names:
                    scores.append(await evaluate(client, name, dataset, standin))
        if recorded.misses:
            print(f"warning: {len(recorded.misses)} prompts had no recorded answer",
                  file=sys.stderr)
    text = report(scores, dataset, args.embedding_provider)
    print(text)
    if args.write:
        write_block(args.write, "consolidation-quality", text, title="Evaluation",
                    heading="Distilled facts: precision and recall of current profiles")


if __name__ == "__main__":
    asyncio.run(main())
