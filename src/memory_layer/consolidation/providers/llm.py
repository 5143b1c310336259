"""What the two LLM providers share: the prompts, reading the JSON answers, and the retry policy.

Each provider implements one call (`_complete(system, user) -> text`), raising `CallFailure` with
a kind and, for 429/5xx, the server's Retry-After. The retry policy is tenacity's: retryable
failures (rate limits, 5xx, timeouts, connection errors) are tried again after Retry-After when
the server sent one, else exponential back-off with jitter, up to MEMORY_LANGUAGE_MAX_RETRIES
times; what is left surfaces as a LanguageError, and the worker keeps the turns for later.

The prompts ask for JSON only (both APIs are told to answer `application/json`):

    extract    {"facts": [{"statement", "kind", "subject", "value", "confidence"}]}
    decide     {"event": "ADD" | "UPDATE" | "NONE", "id": "<an existing fact's id>"}
    summarize  {"summary": "..."}
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
from collections.abc import Awaitable, Callable
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from memory_layer.consolidation.providers.base import (
    Action,
    Decision,
    FactDraft,
    KnownFact,
    LanguageError,
    Turn,
)

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

EXTRACT_SYSTEM = """\
You keep a memory of facts about a user. Read one chat message the user wrote and list the
durable facts and preferences it states about the user themself (where they live, their name,
job, family, diet, allergies, likes, dislikes, preferences, plans worth remembering). Ignore
questions, greetings, small talk and anything not about the user.
Answer with JSON only, in this shape:
{"facts": [{"statement": "The user lives in Porto.", "kind": "fact", "subject": "residence",
"value": "porto", "confidence": 0.9}]}
statement: one short sentence in the third person, starting with "The user".
kind: "fact", or "preference" for likes, dislikes and preferences.
subject: a short key for the attribute (name, residence, origin, occupation, employer, age,
birthday, diet, relation:<who>, allergy:<what>, opinion:<what>, prefers:<topic>,
favourite:<thing>); the same key whenever the same attribute is meant, so a new value can
replace an old one; null when none fits.
value: the attribute's value in lower case. confidence: 0 to 1.
No facts: {"facts": []}"""

DECIDE_SYSTEM = """\
You keep a user's memory current. You get one new fact and the user's existing facts, each with
an id. Decide:
ADD: the new fact is new information;
UPDATE: it replaces an existing fact (the same attribute with a new value, e.g. a new city after
a move); give that fact's id;
NONE: it is already known (the same meaning); give the id of the fact that says it.
Answer with JSON only: {"event": "ADD" | "UPDATE" | "NONE", "id": "<id or null>"}"""

SUMMARY_SYSTEM = """\
You summarise a conversation between a user and an assistant for the assistant, who will
continue it later without seeing the old turns. Keep what matters: who the user is, what they
want, decisions, facts, open questions; drop small talk. You may get the previous summary: fold
the new turns into it. At most {limit} sentences. Answer with JSON only: {{"summary": "..."}}"""

_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$", re.IGNORECASE)


class CallFailure(Exception):
    """One failed call, classified: what to tell the caller, and whether (and when) to retry."""

    def __init__(
        self, message: str, kind: str, retryable: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.retryable = retryable
        self.retry_after = retry_after


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, CallFailure) and exc.retryable


def status_failure(
    status: int, detail: str, retry_after: float | None, provider: str, model: str
) -> CallFailure:
    """An HTTP error answer, classified as the embedding providers classify theirs."""
    if status in (401, 403):
        return CallFailure(f"{provider} rejected the API key ({detail}); check "
                           "MEMORY_LANGUAGE_API_KEY", "auth", False)
    if status == 429:
        return CallFailure(f"{provider} is rate limiting ({detail})", "rate_limited", True,
                           retry_after)
    if status in (408, 504):
        return CallFailure(f"{provider} timed out ({detail})", "timeout", True, retry_after)
    if status >= 500:
        return CallFailure(f"{provider} is unavailable ({detail})", "unavailable", True, retry_after)
    if status == 404:
        return CallFailure(f"{provider} does not serve the model {model!r} ({detail}); check "
                           "MEMORY_LANGUAGE_MODEL", "model", False)
    return CallFailure(f"{provider} refused the request ({detail})", "invalid_input", False)


def read_json(text: str) -> Any:
    """The JSON document of an answer (a code fence around it is tolerated)."""
    try:
        return json.loads(_FENCE.sub("", text))
    except ValueError as exc:
        raise LanguageError(f"the model did not answer JSON: {text[:200]!r}",
                            kind="bad_response", retryable=False) from exc


def _number(value: object, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default


def drafts_from(document: Any) -> list[FactDraft]:
    """The facts of an extraction answer; malformed entries are skipped."""
    entries = document.get("facts") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise LanguageError(f"the model's answer has no facts list: {str(document)[:200]}",
                            kind="bad_response", retryable=False)
    drafts: list[FactDraft] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        statement = entry.get("statement")
        if not isinstance(statement, str) or not statement.strip():
            continue
        kind = entry.get("kind") if entry.get("kind") in ("fact", "preference") else "fact"
        subject = entry.get("subject")
        value = entry.get("value")
        drafts.append(FactDraft(
            statement=statement.strip()[:1000],
            kind=str(kind),
            subject=subject.strip().lower()[:120] if isinstance(subject, str) and subject.strip() else None,
            value=str(value).strip().lower()[:200] if value is not None else None,
            confidence=max(0.0, min(1.0, _number(entry.get("confidence"), 0.8))),
        ))
    return drafts


def decision_from(document: Any, candidates: list[KnownFact]) -> Decision:
    """The model's decision; an id it made up, or none where one is needed, leaves it to the
    rules (a decision on a fact the user does not have cannot be applied)."""
    if not isinstance(document, dict):
        raise LanguageError("the model's decision is not a JSON object", kind="bad_response",
                            retryable=False)
    event = str(document.get("event", "")).strip().lower()
    if event not in ("add", "update", "none"):
        raise LanguageError(f"the model answered the event {event!r}", kind="bad_response",
                            retryable=False)
    action = Action(event)
    if action is Action.add:
        return Decision(Action.add)
    ids = {str(known.id): known.id for known in candidates}
    target = ids.get(str(document.get("id", "")).strip())
    return Decision(action, target)


def summary_from(document: Any) -> str:
    summary = document.get("summary") if isinstance(document, dict) else None
    if not isinstance(summary, str):
        raise LanguageError("the model's answer has no summary", kind="bad_response",
                            retryable=False)
    return summary.strip()


def decide_prompt(draft: FactDraft, candidates: list[KnownFact]) -> str:
    return json.dumps({
        "new_fact": {"statement": draft.statement, "subject": draft.subject, "value": draft.value},
        "existing": [
            {"id": str(known.id), "statement": known.statement, "subject": known.subject}
            for known in candidates
        ],
    }, ensure_ascii=False)


def summary_prompt(previous: str | None, turns: list[Turn]) -> str:
    lines = []
    if previous:
        lines += ["Previous summary:", previous, "", "New turns:"]
    else:
        lines.append("Turns:")
    lines += [f"{turn.role}: {turn.content}" for turn in turns]
    return "\n".join(lines)


class ModelProvider:
    """The calls both LLM providers make, over their own `_complete`."""

    provider_label = "the language model"

    def __init__(
        self,
        *,
        model: str,
        timeout_seconds: float,
        max_retries: int,
        retry_base_seconds: float = 1.0,
        retry_max_seconds: float = 60.0,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if max_retries < 0 or timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive, max_retries not negative")
        self._model = model
        self._timeout_seconds = timeout_seconds
        self._max_retries = max_retries
        self._retry_max_seconds = retry_max_seconds
        self._backoff_step = wait_exponential(multiplier=retry_base_seconds, max=retry_max_seconds)
        self._sleep = sleep
        self._jitter = jitter

    @property
    def uses_model(self) -> bool:
        return True

    async def _complete(self, system: str, user: str) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    async def _ask(self, system: str, user: str) -> Any:
        """One question with the retry policy; the answer's JSON document."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(_is_retryable),
            before_sleep=self._log_retry,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            text: str = await retrying(self._timed, system, user)
        except CallFailure as failure:
            attempts = retrying.statistics.get("attempt_number", 1)
            suffix = f" (gave up after {attempts} attempts)" if attempts > 1 else ""
            raise LanguageError(failure.message + suffix, kind=failure.kind,
                                retryable=failure.retryable) from failure
        return read_json(text)

    async def _timed(self, system: str, user: str) -> str:
        try:
            async with asyncio.timeout(self._timeout_seconds):
                return await self._complete(system, user)
        except TimeoutError as exc:
            raise CallFailure(
                f"{self.provider_label} did not answer within {self._timeout_seconds:g}s",
                "timeout", True,
            ) from exc

    def _wait(self, retry_state: RetryCallState) -> float:
        """The server's hint if it gave one, else back-off with jitter."""
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(failure, CallFailure) and failure.retry_after is not None:
            return min(failure.retry_after, self._retry_max_seconds)
        step = self._backoff_step(retry_state)
        return step / 2 + self._jitter() * step / 2

    def _log_retry(self, retry_state: RetryCallState) -> None:
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(failure, CallFailure):
            logger.warning(
                "%s call failed (%s: %s); retry %d of %d in %.2fs", self.provider_label,
                failure.kind, failure.message, retry_state.attempt_number, self._max_retries,
                retry_state.upcoming_sleep,
            )

    async def extract(self, turn: Turn) -> list[FactDraft]:
        """The facts the model finds in the turn."""
        return drafts_from(await self._ask(EXTRACT_SYSTEM, turn.content))

    async def decide(self, draft: FactDraft, candidates: list[KnownFact]) -> Decision | None:
        """The model's add / update / none over the candidates (add when there are none)."""
        if not candidates:
            return Decision(Action.add)
        return decision_from(await self._ask(DECIDE_SYSTEM, decide_prompt(draft, candidates)),
                             candidates)

    async def summarize(self, previous: str | None, turns: list[Turn], limit: int) -> str:
        """The model's summary of the previous summary and the turns."""
        system = SUMMARY_SYSTEM.format(limit=limit)
        return summary_from(await self._ask(system, summary_prompt(previous, turns)))
