"""What the project's own HTTP clients share (the load test, the retrieval evaluation, `memory-layer
import --url`): a request that waits out `429` and `503` answers.

A `429 rate_limited` (and a `503` such as `database_unavailable`) carries `Retry-After`: the
client waits that many seconds (at most `max_wait`) and sends the request again, up to
`attempts` times in all; without the header it backs off exponentially with jitter. The last
answer is returned whatever it is, so a caller still sees a 429 that outlasted its patience.
Writes are safe to send again when they carry a `client_message_id` (the service answers the
first message), imports always are (lines already stored are skipped), and so are searches and
reads.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt
from tenacity.wait import wait_base, wait_random_exponential

RETRIED_STATUSES = frozenset({429, 503})


def parse_retry_after(value: str | None) -> float | None:
    """A Retry-After value in seconds: delay-seconds or an HTTP date; None when absent or unreadable.
    The one reading of the header, for the project's clients and its model providers alike."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The answer's Retry-After in seconds, or None."""
    return parse_retry_after(response.headers.get("Retry-After"))


class wait_retry_after(wait_base):  # noqa: N801  (tenacity's naming)
    """Wait what the answer's Retry-After says, capped; else fall back to `fallback`."""

    def __init__(self, max_wait: float, fallback: wait_base) -> None:
        self.max_wait = max_wait
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        if outcome is not None and not outcome.failed:
            seconds = retry_after_seconds(outcome.result())
            if seconds is not None:
                return min(self.max_wait, seconds)
        return min(self.max_wait, float(self.fallback(retry_state)))


@dataclass
class RetryCount:
    """How many answers were waited out, by status (a run reports them)."""

    waited: dict[int, int] = field(default_factory=dict)

    def add(self, status: int) -> None:
        self.waited[status] = self.waited.get(status, 0) + 1


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    attempts: int = 8,
    max_wait: float = 60.0,
    count: RetryCount | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    **kwargs: Any,
) -> httpx.Response:
    """`client.request(method, url, **kwargs)`, sent again after a 429 or 503 as Retry-After says."""
    return await call(
        lambda: client.request(method, url, **kwargs),
        attempts=attempts, max_wait=max_wait, count=count, sleep=sleep,
    )


async def call(
    request: Callable[[], Awaitable[httpx.Response]],
    *,
    attempts: int = 8,
    max_wait: float = 60.0,
    count: RetryCount | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> httpx.Response:
    """`await request()`, called again after a 429 or 503 as Retry-After says: a request whose
    body must be made anew for each attempt (a streamed file) is sent this way."""

    def note(state: RetryCallState) -> None:
        if count is not None and state.outcome is not None and not state.outcome.failed:
            count.add(state.outcome.result().status_code)

    retrying = AsyncRetrying(
        retry=retry_if_result(lambda response: response.status_code in RETRIED_STATUSES),
        wait=wait_retry_after(max_wait, wait_random_exponential(multiplier=0.5, max=max_wait)),
        stop=stop_after_attempt(max(1, attempts)),
        before_sleep=note,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        sleep=sleep,
    )
    async def attempt() -> httpx.Response:
        return await request()

    response: httpx.Response = await retrying(attempt)
    return response
