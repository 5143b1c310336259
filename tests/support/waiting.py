"""Waiting for a condition with a deadline, instead of sleeping a fixed time and hoping it held.

A fixed sleep followed by an exact assertion fails on a slow machine and wastes time on a fast one;
`wait_until` polls the condition and returns as soon as it holds, or fails with a message at the
deadline.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float = 10.0,
    interval: float = 0.05,
    *,
    message: str | None = None,
) -> None:
    """Call `predicate` (plain or async) every `interval` seconds until it returns True.

    Raises AssertionError naming the condition when it is still false after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        outcome = predicate()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"still not true after {timeout} s: {what}")
        await asyncio.sleep(interval)
