"""Dynamic batching: concurrent calls to an in-process model share one model call.

Sixteen clients each posting one message would otherwise make sixteen model calls of one text
where one call of sixteen does the same work for less (the local model runs on one thread, so the
calls queue there anyway). A call of fewer than `max_texts` texts waits in a queue; the queue is
sent to the model as one call when it holds `max_texts` texts, or when its oldest call has waited
`wait_seconds` (MEMORY_EMBED_BATCH_WAIT_MS), whichever comes first, and only when the model is
free: while it works on one call, the next calls gather behind it. No call waits longer than
`wait_seconds` for others; past that it waits only for the model. A call of `max_texts` texts or
more (a worker batch) goes to the model as it is.

Nobody waits for callers that cannot come: given `callers` (the HTTP requests this process is
serving, from RequestActivity), the queue goes as soon as it holds a call from each of them, so a
lone search is never held back by the wait, and sixteen concurrent writes go as one call as soon
as the sixteenth arrives.

Each caller gets its own vectors, in its own order. When a shared call fails with an error one
text can cause (PER_TEXT_KINDS: the model rejected an input, a wrong number of vectors), each
caller's texts are sent again on their own, so one bad text fails only its own request; an
error of the provider as a whole (unavailable, rate limited) fails every caller of that call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from memory_layer.embeddings.providers.base import (
    PER_TEXT_KINDS,
    EmbeddingError,
    EmbeddingProvider,
)


@dataclass
class _Call:
    texts: list[str]
    answer: asyncio.Future[list[list[float]]]
    arrived: float


class BatchingProvider:
    def __init__(
        self,
        inner: EmbeddingProvider,
        *,
        wait_seconds: float,
        max_texts: int,
        queries_are_documents: bool = True,
        callers: Callable[[], int] | None = None,
    ) -> None:
        self.inner = inner
        # How many callers there may be in all (the requests in flight): a queue holding a call
        # of each has nobody left to wait for.
        self._callers = callers
        self._wait = wait_seconds
        self._max_texts = max_texts
        # A query's vector is the document vector of its text (the local model): queries join the
        # same batches. Otherwise they go to the provider's own query call, unbatched.
        self._queries_are_documents = queries_are_documents
        self._queue: deque[_Call] = deque()
        self._queued_texts = 0
        self._busy = False
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        # Model calls made and texts sent, for tests and benchmarks.
        self.model_calls = 0
        self.texts_sent = 0

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def dimensions(self) -> int:
        return self.inner.dimensions

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        if self._closed:
            raise EmbeddingError("the embedding provider is closed", kind="unavailable")
        if len(texts) >= self._max_texts:
            return await self._call(list(texts))
        loop = asyncio.get_running_loop()
        call = _Call(list(texts), loop.create_future(), loop.time())
        self._queue.append(call)
        self._queued_texts += len(texts)
        self._dispatch()
        return await call.answer

    async def embed_query(self, text: str) -> list[float]:
        if self._queries_are_documents:
            return (await self.embed_documents([text]))[0]
        return await self.inner.embed_query(text)

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        closing = EmbeddingError("the embedding provider is closed", kind="unavailable")
        while self._queue:
            call = self._queue.popleft()
            if not call.answer.done():
                call.answer.set_exception(closing)
        await self.inner.close()

    # --- the queue ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Send the queue to the model if it is free and the queue is full or due."""
        if self._busy or self._closed:
            return
        self._drop_abandoned()
        if not self._queue:
            return
        loop = asyncio.get_running_loop()
        due = self._queue[0].arrived + self._wait
        if (
            self._queued_texts < self._max_texts
            and loop.time() < due
            and not self._everyone_queued()
        ):
            if self._timer is None:
                self._timer = loop.call_at(due, self._on_timer)
            return
        batch = self._take()
        self._busy = True
        task = loop.create_task(self._run(batch), name="embed-batch")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _everyone_queued(self) -> bool:
        return self._callers is not None and len(self._queue) >= self._callers()

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _drop_abandoned(self) -> None:
        # A caller that gave up (its request was cancelled) leaves a done future behind.
        while self._queue and self._queue[0].answer.done():
            self._queued_texts -= len(self._queue.popleft().texts)

    def _take(self) -> list[_Call]:
        batch: list[_Call] = []
        size = 0
        while self._queue and size + len(self._queue[0].texts) <= self._max_texts:
            call = self._queue.popleft()
            self._queued_texts -= len(call.texts)
            if not call.answer.done():
                batch.append(call)
                size += len(call.texts)
        return batch

    async def _run(self, batch: list[_Call]) -> None:
        try:
            try:
                vectors = await self._call([text for call in batch for text in call.texts])
            except asyncio.CancelledError:
                closing = EmbeddingError("the embedding provider is closed", kind="unavailable")
                for call in batch:
                    _fail(call, closing)
                raise
            except EmbeddingError as exc:
                if exc.kind in PER_TEXT_KINDS and len(batch) > 1:
                    for call in batch:
                        await self._run_alone(call)
                    return
                for call in batch:
                    _fail(call, exc)
                return
            start = 0
            for call in batch:
                _answer(call, vectors[start : start + len(call.texts)])
                start += len(call.texts)
        finally:
            self._busy = False
            if not self._closed:
                self._dispatch()

    async def _run_alone(self, call: _Call) -> None:
        if call.answer.done():
            return
        try:
            _answer(call, await self._call(call.texts))
        except EmbeddingError as exc:
            _fail(call, exc)

    async def _call(self, texts: list[str]) -> list[list[float]]:
        self.model_calls += 1
        self.texts_sent += len(texts)
        try:
            vectors = await self.inner.embed_documents(texts)
        except EmbeddingError:
            raise
        except Exception as exc:
            raise EmbeddingError(f"{type(exc).__name__}: {exc}", kind="model") from exc
        if len(vectors) != len(texts):
            raise EmbeddingError(
                f"the provider returned {len(vectors)} vectors for {len(texts)} texts",
                kind="bad_response",
            )
        return vectors


def _answer(call: _Call, vectors: list[list[float]]) -> None:
    if not call.answer.done():
        call.answer.set_result(vectors)


def _fail(call: _Call, exc: EmbeddingError) -> None:
    if not call.answer.done():
        call.answer.set_exception(exc)
