"""The embedding worker: claims pending messages in batches, embeds them, writes the vectors.

It runs inside `memory-layer serve` (small deployments, the embedded default) or alone as
`memory-layer worker`; any number may run against one database. It sleeps until PostgreSQL
notifies it of a new pending row (LISTEN), with a slow poll as a safety net and to pick up rows
whose back-off or lease has run out. Every state change is a committed UPDATE of the row itself,
so killing a worker at any instant loses nothing: its lease expires and another worker (or its
own restart) finishes the rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from memory_layer.config import ContextVectors, Settings
from memory_layer.embeddings.providers.base import PER_TEXT_KINDS, EmbeddingError, EmbeddingProvider
from memory_layer.embeddings.repository import (
    CHANNEL,
    CONTEXT_CHANNEL,
    ContextJob,
    EmbeddingJobRepository,
    Failure,
    Job,
)
from memory_layer.embeddings.service import refresh_queue_depth
from memory_layer.kit.cache import note_write, publish_writes
from memory_layer.kit.db.engine import to_libpq_url
from memory_layer.kit.observability.metrics import Metrics
from memory_layer.kit.observability.requests import QuietGate, RequestActivity
from memory_layer.models.message import EmbeddingStatus

logger = logging.getLogger(__name__)

# Errors that describe the provider, not the texts: back off the whole batch, spend no attempt.
PROVIDER_WIDE_KINDS = frozenset({"rate_limited", "unavailable"})


def backoff_seconds(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential back-off with full jitter in [0.5, 1.0] of the step (attempt counts from 1)."""
    step: float = min(cap, base * 2.0 ** max(attempt - 1, 0))
    return step * (0.5 + 0.5 * rng.random())


@dataclass
class Embedded:
    """A claimed batch after the model call: its vectors and failures, not yet written."""

    jobs: list[Job]
    done: list[tuple[Job, list[float]]]
    failures: list[Failure]
    started: float


@dataclass
class BatchOutcome:
    claimed: int = 0
    ready: int = 0
    retrying: int = 0
    failed: int = 0


class EmbeddingWorker:
    """One worker loop; `run(stop)` until the event is set, `run_once()` for a single batch."""

    def __init__(
        self,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        embedder: EmbeddingProvider,
        settings: Settings,
        metrics: Metrics,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.perf_counter,
        activity: RequestActivity | None = None,
    ) -> None:
        self.engine = engine
        # Context vectors wait for a quiet moment of the serving process, bounded.
        self.context_gate = QuietGate(
            activity, settings.context_vectors_idle_ms / 1000,
            settings.context_vectors_max_defer_seconds,
        )
        self.sessionmaker = sessionmaker
        self.embedder = embedder
        self.settings = settings
        self.metrics = metrics
        self.owner = uuid.uuid4()
        self.rng = rng or random.Random()
        self.clock = clock
        self.wake = asyncio.Event()
        self.listening = asyncio.Event()
        self._last_depth_refresh = 0.0

    # --- one batch -------------------------------------------------------------------------

    async def run_once(self) -> BatchOutcome:
        """Claim up to MEMORY_WORKER_BATCH_SIZE due rows, embed them, record the outcome."""
        jobs = await self._claim()
        if not jobs:
            return BatchOutcome()
        return await self._record(await self._embed_claimed(jobs))

    async def _claim(self) -> list[Job]:
        async with self.sessionmaker.begin() as session:
            return await EmbeddingJobRepository(session).claim(
                self.owner, self.settings.worker_batch_size, self.settings.worker_lease_seconds
            )

    async def _embed_claimed(self, jobs: list[Job]) -> Embedded:
        started = self.clock()
        try:
            done, failures = await self._embed(jobs)
        except asyncio.CancelledError:
            # Cancelled mid-batch (shutdown ran out of patience): hand the rows back now rather
            # than leaving them to the lease.
            await asyncio.shield(self.release())
            raise
        return Embedded(jobs, done, failures, started)

    async def _record(self, embedded: Embedded) -> BatchOutcome:
        """Write one embedded batch's vectors and failures (one transaction) and its metrics."""
        jobs = embedded.jobs
        outcome = BatchOutcome(claimed=len(jobs))
        async with self.sessionmaker.begin() as session:
            repository = EmbeddingJobRepository(session)
            written = await repository.complete(
                self.owner, self.embedder.model_name, embedded.done
            )
            statuses = dict(
                await repository.fail(
                    self.owner, embedded.failures, self.settings.embedding_max_attempts
                )
            )
            # New vectors change the tenants' vector hits: their cached searches must go.
            for tenant_id in {job.tenant_id for job, _ in embedded.done}:
                note_write(session, tenant_id)
        await publish_writes(session)
        outcome.ready = len(written)
        outcome.failed = sum(1 for status in statuses.values() if status == EmbeddingStatus.failed)
        outcome.retrying = len(statuses) - outcome.failed
        self._log_outcome(embedded.done, written, embedded.failures, statuses)
        elapsed = self.clock() - embedded.started
        self.metrics.worker_batch_size.observe(len(jobs))
        self.metrics.worker_batch_seconds.observe(elapsed)
        self.metrics.worker_embeddings.labels(model=self.embedder.model_name).inc(outcome.ready)
        if outcome.failed:
            self.metrics.worker_failed_rows.inc(outcome.failed)
        return outcome

    def _log_outcome(
        self,
        done: list[tuple[Job, list[float]]],
        written: set[uuid.UUID],
        failures: list[Failure],
        statuses: dict[uuid.UUID, str],
    ) -> None:
        """One line per message, with the request id of the request that stored it (never its text)."""
        for job, _ in done:
            if job.id in written:
                logger.info("message embedded", extra=_job_fields(job))
        for failure in failures:
            status = statuses.get(failure.job.id)
            if status is None:
                continue  # the lease was lost: the row is someone else's now
            fields = _job_fields(failure.job) | {"error_kind": failure.error.partition(":")[0]}
            if status == EmbeddingStatus.failed:
                logger.warning("message failed to embed for good; see embedding_error", extra=fields)
            else:
                logger.info("message embedding will be retried", extra=fields)

    async def _embed(self, jobs: list[Job]) -> tuple[list[tuple[Job, list[float]]], list[Failure]]:
        try:
            vectors = await self._call([job.content for job in jobs])
        except EmbeddingError as exc:
            self._count_error(exc)
            if exc.kind in PER_TEXT_KINDS and len(jobs) > 1:
                return await self._embed_one_by_one(jobs)
            return [], [self._failure(job, exc) for job in jobs]
        return list(zip(jobs, vectors, strict=True)), []

    async def _call(self, texts: list[str]) -> list[list[float]]:
        """The provider call, with any unexpected exception treated as a failure of these texts."""
        try:
            vectors = await self.embedder.embed_documents(texts)
        except EmbeddingError:
            raise
        except Exception as exc:
            raise EmbeddingError(f"{type(exc).__name__}: {exc}", kind="model") from exc
        if len(vectors) != len(texts):
            raise EmbeddingError(
                f"provider returned {len(vectors)} vectors for {len(texts)} texts", kind="bad_response"
            )
        return vectors

    async def _embed_one_by_one(
        self, jobs: list[Job]
    ) -> tuple[list[tuple[Job, list[float]]], list[Failure]]:
        done: list[tuple[Job, list[float]]] = []
        failures: list[Failure] = []
        for job in jobs:
            try:
                done.append((job, (await self._call([job.content]))[0]))
            except EmbeddingError as exc:
                self._count_error(exc)
                failures.append(self._failure(job, exc))
        return done, failures

    def _failure(self, job: Job, exc: EmbeddingError) -> Failure:
        counts = exc.kind not in PROVIDER_WIDE_KINDS
        # An attempt that is given back does not advance the back-off; use the attempts so far.
        attempt = job.attempts if counts else max(job.attempts - 1, 1)
        delay = backoff_seconds(
            attempt,
            self.settings.embedding_retry_base_seconds,
            self.settings.embedding_retry_max_seconds,
            self.rng,
        )
        return Failure(job=job, error=f"{exc.kind}: {exc}", delay_seconds=delay, counts=counts)

    def _count_error(self, exc: EmbeddingError) -> None:
        self.metrics.embedding_errors.labels(provider=self.embedder.model_name, kind=exc.kind).inc()

    async def release(self) -> int:
        async with self.sessionmaker.begin() as session:
            repository = EmbeddingJobRepository(session)
            return await repository.release(self.owner) + await repository.release_context(
                self.owner
            )

    # --- context vectors -------------------------------------------------------------------

    @property
    def context_enabled(self) -> bool:
        return self.settings.context_vectors is not ContextVectors.off

    def _seconds_until_idle(self) -> float:
        """How long until context vectors may be filled again (inf: no wait on requests)."""
        if not self.context_enabled:
            return float("inf")
        wait = self.context_gate.seconds_until_open()
        return float("inf") if wait == 0 else wait  # due now: the poll interval governs

    def context_due(self) -> bool:
        """Whether the loop may fill context vectors now: they are on, and the process has
        served no request for MEMORY_CONTEXT_VECTORS_IDLE_MS, or has put them off for
        MEMORY_CONTEXT_VECTORS_MAX_DEFER_SECONDS (always, without requests to yield to)."""
        return self.context_enabled and self.context_gate.is_open()

    async def fill_context_once(self) -> int:
        """Claim up to MEMORY_WORKER_BATCH_SIZE turns that have their own vector but no context
        vector, embed "previous turn, then the turn" for each in one provider call, write them.
        Returns the number handled (0: nothing to do, or the provider failed as a whole)."""
        async with self.sessionmaker.begin() as session:
            jobs = await EmbeddingJobRepository(session).claim_context(
                self.owner, self.settings.worker_batch_size, self.settings.worker_lease_seconds
            )
        if not jobs:
            return 0
        try:
            done = await self._embed_context(jobs)
        except asyncio.CancelledError:
            await asyncio.shield(self.release())
            raise
        if done is None:
            # The provider is unavailable or rate limited: the rows return when the lease ends,
            # and the caller waits rather than claiming the next batch at once.
            return 0
        async with self.sessionmaker.begin() as session:
            # memory_worker_embeddings_total counts the turns' own vectors only.
            await EmbeddingJobRepository(session).complete_context(self.owner, done)
            for tenant_id in {job.tenant_id for job, _ in done}:
                note_write(session, tenant_id)
        await publish_writes(session)
        return len(jobs)

    async def _embed_context(
        self, jobs: list[ContextJob]
    ) -> list[tuple[ContextJob, list[float] | None]] | None:
        """Each job's context vector (None: the turn's own vector serves, for a first turn or a
        text the provider refuses); None when the provider as a whole failed."""
        with_text = [job for job in jobs if job.text is not None]
        vectors: dict[uuid.UUID, list[float]] = {}
        if with_text:
            try:
                found = await self._call([job.text for job in with_text if job.text is not None])
                vectors = {job.id: vector for job, vector in zip(with_text, found, strict=True)}
            except EmbeddingError as exc:
                self._count_error(exc)
                if exc.kind not in PER_TEXT_KINDS:
                    return None
                for job in with_text:
                    assert job.text is not None
                    try:
                        vectors[job.id] = (await self._call([job.text]))[0]
                    except EmbeddingError as one:
                        self._count_error(one)
                        if one.kind not in PER_TEXT_KINDS:
                            return None
        return [(job, vectors.get(job.id)) for job in jobs]

    async def fill_context(self) -> int:
        """Fill context vectors until none is due; the number of turns handled."""
        handled = 0
        while True:
            claimed = await self.fill_context_once()
            handled += claimed
            if claimed < self.settings.worker_batch_size:
                return handled

    # --- the loop --------------------------------------------------------------------------

    async def drain(self) -> int:
        """Process batches until nothing is due; returns the number of rows made ready."""
        ready = 0
        while True:
            outcome = await self.run_once()
            ready += outcome.ready
            if outcome.claimed == 0:
                return ready

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; the batch in hand is finished first.

        Batches overlap: while one batch's vectors are written (a transaction on the database),
        the next batch is already claimed and in the model, so the model never waits for a
        commit. Each batch is still written in its own transaction, and only rows it leased.
        """
        listener = asyncio.create_task(self._listen(stop), name="embedding-listener")
        writing: asyncio.Task[BatchOutcome] | None = None
        ahead: asyncio.Task[list[Job]] | None = None
        try:
            while not stop.is_set():
                claimed = 0
                try:
                    if ahead is not None:
                        claiming, ahead = ahead, None
                        jobs = await claiming
                    else:
                        jobs = await self._claim()
                    claimed = len(jobs)
                    if claimed >= self.settings.worker_batch_size:
                        # More is probably due: claim the next batch while the model embeds this
                        # one, so the model does not wait for the claim's round trip (which
                        # queues behind the requests on a busy event loop).
                        ahead = asyncio.create_task(self._claim(), name="embedding-claim")
                    embedded = await self._embed_claimed(jobs) if jobs else None
                    if writing is not None:
                        await self._finish(writing)
                        writing = None
                    if embedded is not None:
                        writing = asyncio.create_task(self._record(embedded), name="embedding-write")
                    await self.refresh_queue_depth()
                except Exception:
                    logger.exception("embedding worker batch failed; retrying after the poll interval")
                    await self._sleep_until(stop, self.settings.worker_poll_seconds)
                    continue
                if claimed >= self.settings.worker_batch_size:
                    continue  # more is probably due: no waiting
                if writing is not None:
                    await self._finish(writing)
                    writing = None
                if self.context_due():
                    if await self._fill_context_safely():
                        continue  # a full batch of context vectors: more is probably due
                    self.context_gate.drained()
                await self._sleep_until(
                    stop, min(await self._seconds_until_due(), self._seconds_until_idle())
                )
                self.wake.clear()
                if self.settings.worker_batch_wait_ms > 0 and not stop.is_set():
                    # Let a burst of writes gather so the model sees a fuller batch.
                    await asyncio.sleep(self.settings.worker_batch_wait_ms / 1000)
        finally:
            if writing is not None:
                # The batch's vectors are computed: write them even when cancelled.
                await asyncio.shield(self._finish(writing))
            if ahead is not None:
                # A batch claimed ahead and never embedded: hand its rows back now.
                await asyncio.shield(self._hand_back(ahead))
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _fill_context_safely(self) -> bool:
        """One batch of context vectors, once the main queue is empty; whether it was full."""
        try:
            claimed = await self.fill_context_once()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("filling context vectors failed; retrying after the poll interval")
            return False
        return claimed >= self.settings.worker_batch_size

    async def _hand_back(self, claiming: asyncio.Task[list[Job]]) -> None:
        """Release the rows of a claim made ahead that the loop will not embed."""
        try:
            await claiming
        except Exception:
            logger.exception("claiming ahead failed; nothing to hand back")
            return
        await self.release()

    async def _finish(self, writing: asyncio.Task[BatchOutcome]) -> None:
        """Wait for a batch's write; a failed write leaves its rows to the lease (logged)."""
        try:
            await asyncio.shield(writing)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("writing an embedded batch failed; its rows return when the lease ends")

    async def _seconds_until_due(self) -> float:
        poll = self.settings.worker_poll_seconds
        try:
            async with self.sessionmaker() as session:
                due = await EmbeddingJobRepository(session).next_due_at()
        except Exception:
            return poll
        if due is None:
            return poll
        return max(0.0, min(poll, (due - datetime.now(UTC)).total_seconds()))

    async def _sleep_until(self, stop: asyncio.Event, timeout: float) -> None:
        if timeout <= 0 or self.wake.is_set():
            return
        waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _listen(self, stop: asyncio.Event) -> None:
        """LISTEN on a dedicated connection; reconnect after losing it (the poll covers the gap)."""
        dsn = to_libpq_url(self.engine.url.render_as_string(hide_password=False))

        def on_notify(*_: object) -> None:
            self.wake.set()

        def on_context(*_: object) -> None:
            # While requests come, the turn waits for the idle check, not for this wake-up.
            if self.context_due():
                self.wake.set()

        while not stop.is_set():
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(dsn)
                await connection.add_listener(CHANNEL, on_notify)
                if self.context_enabled:
                    await connection.add_listener(CONTEXT_CHANNEL, on_context)
                self.listening.set()
                self.wake.set()  # rows may have arrived while no one listened
                while not connection.is_closed() and not stop.is_set():
                    await asyncio.sleep(self.settings.worker_poll_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("embedding worker cannot LISTEN (%s); polling until it can", exc)
            finally:
                self.listening.clear()
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(connection.close(timeout=2))
            if not stop.is_set():
                await asyncio.sleep(self.settings.worker_poll_seconds)

    async def refresh_queue_depth(self, *, force: bool = False) -> None:
        """Update the pending/failed gauges, at most once a second."""
        now = self.clock()
        if not force and now - self._last_depth_refresh < 1.0:
            return
        self._last_depth_refresh = now
        await refresh_queue_depth(self.sessionmaker, self.metrics)


def _job_fields(job: Job) -> dict[str, object]:
    # request_id is always named (None for rows stored without one), so a request id of the
    # serving process's context never stands in for the message's own.
    return {
        "tenant_id": job.tenant_id,
        "message_id": str(job.id),
        "request_id": job.request_id,
        "attempt": job.attempts,
    }


async def stop_worker(task: asyncio.Task[None], stop: asyncio.Event, grace_seconds: float) -> None:
    """Ask the worker to stop, give it `grace_seconds` to finish its batch, then cancel it."""
    stop.set()
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=grace_seconds)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    except asyncio.CancelledError:
        task.cancel()
        raise
