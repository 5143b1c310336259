"""The consolidation loop: claims new turns, distils facts from the user's, keeps summaries.

It runs beside the embedding worker (in `memory-layer serve` with MEMORY_WORKER_ENABLED, and in
`memory-layer worker`), never on the write path: a POST only stores the row, whose
`consolidation_status` is `pending` by the column's default. A turn is claimed once its embedding
is settled, oldest first. The turns of one conversation in a batch are handled together: facts
from each user turn (when the tenant's policy extracts facts), then the conversation's summary if
MEMORY_SUMMARY_EVERY_TURNS new turns arrived (when its policy summarises). Only then are they
marked done. A provider failure marks them for a later attempt with back-off (a rate limit or an
outage spends no attempt); after MEMORY_CONSOLIDATION_MAX_ATTEMPTS they are parked as `failed`
with the error. A turn is never lost: at worst its lease runs out and it is claimed again, and
reconciliation makes a repeated turn change nothing.

Inside `serve` it is background work that can wait: it starts a batch once the process has served
no request for MEMORY_CONSOLIDATION_IDLE_MS, so a burst of writes does not share the cores with
distilling them; a process that stays busy still consolidates once MEMORY_CONSOLIDATION_MAX_DEFER_
SECONDS have passed, and then until its queue is drained. `memory-layer worker` does not wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from memory_layer.consolidation.providers.base import LanguageError, Turn
from memory_layer.consolidation.repository import ConsolidationRepository, Failure, Job
from memory_layer.consolidation.service import (
    Distillers,
    Stated,
    store_facts,
    summarize_conversation,
)
from memory_layer.embeddings.worker import PROVIDER_WIDE_KINDS, backoff_seconds
from memory_layer.kit.observability.requests import QuietGate, RequestActivity
from memory_layer.models.message import Kind, Role
from memory_layer.policies.service import EffectivePolicy, load_policy

logger = logging.getLogger(__name__)


@dataclass
class ConsolidationOutcome:
    claimed: int = 0
    done: int = 0
    retrying: int = 0
    failed: int = 0


def _groups(jobs: Iterable[Job]) -> list[list[Job]]:
    """The jobs by (tenant, conversation), each group in turn order, groups by first turn."""
    groups: dict[tuple[str, str], list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.tenant_id, job.conversation_id), []).append(job)
    return list(groups.values())


def _turn(job: Job) -> Turn:
    return Turn(
        id=job.id, role=job.role, content=job.content, created_at=job.created_at,
        importance=job.importance, user_id=job.user_id,
    )


class ConsolidationWorker:
    """One loop; `run(stop)` until the event is set, `run_once()` / `drain()` for tests and CLI."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        distillers: Distillers,
        *,
        rng: random.Random | None = None,
        activity: RequestActivity | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.distillers = distillers
        self.settings = distillers.settings
        self.owner = uuid.uuid4()
        self.rng = rng or random.Random()
        # The requests of the process it runs in (serve): batches wait for a quiet moment.
        self.gate = QuietGate(
            activity, self.settings.consolidation_idle_ms / 1000,
            self.settings.consolidation_max_defer_seconds,
        )

    async def run_once(self, tenant_id: str | None = None) -> ConsolidationOutcome:
        """Claim up to MEMORY_CONSOLIDATION_BATCH_SIZE due turns (of one tenant, if given) and
        consolidate them."""
        async with self.sessionmaker.begin() as session:
            jobs = await ConsolidationRepository(session).claim(
                self.owner, self.settings.consolidation_batch_size,
                self.settings.worker_lease_seconds, tenant_id,
            )
        outcome = ConsolidationOutcome(claimed=len(jobs))
        if not jobs:
            return outcome
        policies: dict[str, EffectivePolicy] = {}
        done: list[Job] = []
        failures: list[Failure] = []
        try:
            for group in _groups(jobs):
                tenant = group[0].tenant_id
                if tenant not in policies:
                    policies[tenant] = await load_policy(self.sessionmaker, tenant, self.settings)
                try:
                    await self._consolidate(group, policies[tenant])
                except LanguageError as exc:
                    self.distillers.metrics.consolidation_errors.labels(
                        provider=self.distillers.provider.name, kind=exc.kind
                    ).inc()
                    failures.extend(self._failure(job, exc.kind, str(exc)) for job in group)
                except Exception as exc:
                    logger.exception("consolidating a conversation failed; its turns are retried")
                    failures.extend(
                        self._failure(job, "error", f"{type(exc).__name__}: {exc}") for job in group
                    )
                else:
                    done.extend(group)
        except asyncio.CancelledError:
            await asyncio.shield(self.release())
            raise
        async with self.sessionmaker.begin() as session:
            repository = ConsolidationRepository(session)
            completed = await repository.complete(self.owner, done)
            statuses = dict(
                await repository.fail(self.owner, failures, self.settings.consolidation_max_attempts)
            )
        outcome.done = len(completed)
        outcome.failed = sum(1 for status in statuses.values() if status == "failed")
        outcome.retrying = len(statuses) - outcome.failed
        if outcome.failed:
            self.distillers.metrics.consolidation_failed_rows.inc(outcome.failed)
            logger.warning("%d turns failed consolidation for good; see consolidation_error",
                           outcome.failed)
        return outcome

    async def _consolidate(self, group: list[Job], policy: EffectivePolicy) -> None:
        turns = [job for job in group if job.readable and job.kind == Kind.message.value]
        if policy.extract_facts:
            stated: list[Stated] = []
            for job in turns:
                if job.role != Role.user.value or job.user_id is None:
                    continue
                turn = _turn(job)
                drafts = await self.distillers.provider.extract(turn)
                if drafts:
                    stated.append(Stated(turn, job.user_id, drafts))
            await store_facts(
                self.sessionmaker, group[0].tenant_id, group[0].conversation_id, stated,
                self.distillers,
            )
        if policy.summarize and turns:
            await summarize_conversation(
                self.sessionmaker, group[0].tenant_id, group[0].conversation_id, self.distillers
            )

    def _failure(self, job: Job, kind: str, error: str) -> Failure:
        counts = kind not in PROVIDER_WIDE_KINDS
        attempt = job.attempts if counts else max(job.attempts - 1, 1)
        delay = backoff_seconds(
            attempt,
            self.settings.consolidation_retry_base_seconds,
            self.settings.consolidation_retry_max_seconds,
            self.rng,
        )
        return Failure(job=job, error=f"{kind}: {error}", delay_seconds=delay, counts=counts)

    async def release(self) -> int:
        async with self.sessionmaker.begin() as session:
            return await ConsolidationRepository(session).release(self.owner)

    async def drain(self, tenant_id: str | None = None) -> int:
        """Consolidate until nothing is due; the turns marked done."""
        done = 0
        while True:
            outcome = await self.run_once(tenant_id)
            done += outcome.done
            if outcome.claimed == 0 or outcome.done == 0 and outcome.retrying == outcome.claimed:
                return done

    def seconds_until_quiet(self) -> float:
        """How long to wait before the next batch (0: now): QuietGate over
        MEMORY_CONSOLIDATION_IDLE_MS and MEMORY_CONSOLIDATION_MAX_DEFER_SECONDS."""
        return self.gate.seconds_until_open()

    async def _wait_until_quiet(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and (delay := self.seconds_until_quiet()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; polls every MEMORY_CONSOLIDATION_POLL_SECONDS when idle."""
        while not stop.is_set():
            await self._wait_until_quiet(stop)
            if stop.is_set():
                return
            try:
                outcome = await self.run_once()
            except Exception:
                logger.exception("consolidation batch failed; retrying after the poll interval")
                outcome = ConsolidationOutcome()
            if outcome.claimed >= self.settings.consolidation_batch_size:
                continue
            # The queue is drained: the next work waits for a quiet moment again.
            self.gate.drained()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.consolidation_poll_seconds)
