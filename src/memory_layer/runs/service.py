"""Runs: the history of a tenant's flow runs and the JSON outputs of their tasks.

A run moves pending -> running -> completed | failed | cancelled; a final status is never left.
`finished_at` is set when a run reaches a final status (the client's time, else now). Task
outputs are one JSON document per (run, task): a PUT of the same document again changes nothing
(idempotent); once the run is final its outputs are frozen (a different document is 409).

Quotas apply as to messages, counted apart from them: the tenant's `max_messages` caps its runs
and `max_content_bytes` the bytes of its runs' parameters plus task outputs (compact UTF-8 JSON).
Retention deletes runs created before the tenant's `delete_after_days` (with their outputs).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.kit.errors import Conflict, DomainError, InvalidInput, NotFound
from memory_layer.kit.ids import new_id
from memory_layer.kit.pagination import CursorCodec, Keyset, Page, PageRequest, SortOrder, paginate
from memory_layer.models.run import TERMINAL_STATUSES, Run, RunStatus, RunTaskOutput
from memory_layer.policies.service import EffectivePolicy, QuotaExceeded, lock_usage
from memory_layer.runs.repository import RunRepository

# Where each status may go (a status may always be set again: nothing changes).
TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.pending: frozenset(
        {RunStatus.running, RunStatus.completed, RunStatus.failed, RunStatus.cancelled}
    ),
    RunStatus.running: frozenset({RunStatus.completed, RunStatus.failed, RunStatus.cancelled}),
    RunStatus.completed: frozenset(),
    RunStatus.failed: frozenset(),
    RunStatus.cancelled: frozenset(),
}


class RunPosition(BaseModel):
    """Where a page of runs ends: the last run's creation time and id."""

    created_at: datetime
    id: uuid.UUID


class OutputTooLarge(DomainError):
    status_code = 413
    code = "output_too_large"


def _compact(document: object, what: str, code: str) -> int:
    """The size of `document` as compact UTF-8 JSON; NUL is refused (PostgreSQL cannot hold it)."""
    encoded = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    if "\\u0000" in encoded:
        raise InvalidInput(f"{what} must not contain NUL (\\u0000) characters", code=code)
    return len(encoded.encode())


def _run_not_found(tenant_id: str, run_id: uuid.UUID) -> NotFound:
    return NotFound(f"tenant {tenant_id!r} has no run {run_id}", code="run_not_found")


@dataclass(frozen=True)
class NewRun:
    flow_name: str
    status: RunStatus = RunStatus.pending
    parameters: dict[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class RunQuery:
    """A listing's filters and page."""

    flow_name: str | None = None
    status: RunStatus | None = None
    since: datetime | None = None
    until: datetime | None = None
    order: SortOrder = SortOrder.desc
    limit: int = 50
    cursor: str | None = None


async def _check_quota(
    session: AsyncSession, policy: EffectivePolicy, adding_runs: int, adding_bytes: int
) -> None:
    """Runs and their bytes against the tenant's max_messages and max_content_bytes, counted
    apart from its messages. The tenant's usage row is locked first, so concurrent writers of
    one tenant check one after the other."""
    if not policy.has_quota:
        return
    await lock_usage(session, policy.tenant_id)
    runs, stored_bytes = await RunRepository(session).usage(policy.tenant_id)
    for quota, limit, current, adding in (
        ("max_messages (runs)", policy.max_messages, runs, adding_runs),
        ("max_content_bytes (runs)", policy.max_content_bytes, stored_bytes, adding_bytes),
    ):
        if limit > 0 and adding > 0 and current + adding > limit:
            raise QuotaExceeded(policy.tenant_id, quota, limit, current, adding)


def _times_for(
    status: RunStatus,
    started_at: datetime | None,
    finished_at: datetime | None,
    *,
    current_started_at: datetime | None = None,
) -> dict[str, datetime | None]:
    now = datetime.now(UTC)
    final = status in TERMINAL_STATUSES
    if finished_at is not None and not final:
        raise InvalidInput(
            f"finished_at is only given with a final status (completed, failed, cancelled), "
            f"not {status.value}",
            code="invalid_run_times",
        )
    started = started_at or current_started_at
    if started is None and status is RunStatus.running:
        started = now
    finished = (finished_at or now) if final else None
    if started is not None and finished is not None and finished < started:
        raise InvalidInput("finished_at must not be before started_at", code="invalid_run_times")
    return {"started_at": started, "finished_at": finished}


async def create_run(
    session: AsyncSession, tenant_id: str, run: NewRun, *, policy: EffectivePolicy,
    max_parameters_bytes: int,
) -> Run:
    """Store a new run (its id is new, time-ordered); quotas as described above."""
    size = _compact(run.parameters, "parameters", "invalid_parameters")
    if size > max_parameters_bytes:
        raise InvalidInput(
            f"parameters are {size} bytes as JSON; the limit is {max_parameters_bytes} "
            "(MEMORY_MAX_METADATA_BYTES)",
            code="parameters_too_large",
        )
    await _check_quota(session, policy, 1, size)
    return await RunRepository(session).insert(
        {
            "tenant_id": tenant_id,
            "id": new_id(),
            "flow_name": run.flow_name,
            "status": run.status.value,
            "parameters": run.parameters,
            "parameters_bytes": size,
            **_times_for(run.status, run.started_at, run.finished_at),
        }
    )


async def get_run(session: AsyncSession, tenant_id: str, run_id: uuid.UUID) -> Run:
    """One run of the tenant, or 404 `run_not_found`."""
    run = await RunRepository(session).get(tenant_id, run_id)
    if run is None:
        raise _run_not_found(tenant_id, run_id)
    return run


async def update_status(
    session: AsyncSession,
    tenant_id: str,
    run_id: uuid.UUID,
    status: RunStatus,
    *,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
) -> Run:
    """Move a run to `status` (409 `invalid_transition` when its current status forbids it);
    the current status again changes nothing."""
    repository = RunRepository(session)
    run = await repository.get(tenant_id, run_id, lock=True)
    if run is None:
        raise _run_not_found(tenant_id, run_id)
    current = RunStatus(run.status)
    if status is current and started_at is None and finished_at is None:
        return run
    if status is not current and status not in TRANSITIONS[current]:
        raise Conflict(
            {
                "message": f"run {run_id} is {current.value}; it cannot become {status.value}",
                "status": current.value,
                "allowed": sorted(item.value for item in TRANSITIONS[current]),
            },
            code="invalid_transition",
        )
    if status is current and current in TERMINAL_STATUSES:
        # A final run's times are history too.
        raise Conflict(
            {"message": f"run {run_id} is {current.value}; its times are final",
             "status": current.value, "allowed": []},
            code="invalid_transition",
        )
    times = _times_for(status, started_at, finished_at, current_started_at=run.started_at)
    return await repository.update(run, {"status": status.value, **times})


async def delete_run(session: AsyncSession, tenant_id: str, run_id: uuid.UUID) -> None:
    """Delete a run and its task outputs (404 `run_not_found` when there is none)."""
    if not await RunRepository(session).delete(tenant_id, run_id):
        raise _run_not_found(tenant_id, run_id)


async def list_runs(
    session: AsyncSession, tenant_id: str, query: RunQuery, *, cursors: CursorCodec
) -> Page[Run]:
    """The tenant's runs, filtered by flow, status and creation time, newest first (or oldest)."""
    repository = RunRepository(session)
    statement = repository.listing(
        tenant_id,
        flow_name=query.flow_name,
        status=query.status.value if query.status is not None else None,
        since=query.since,
        until=query.until,
    )
    keyset = Keyset(RunPosition, {"created_at": Run.created_at, "id": Run.id}, order=query.order)
    scope = {
        "listing": "runs",
        "tenant": tenant_id,
        "order": query.order.value,
        "flow_name": query.flow_name,
        "status": query.status.value if query.status is not None else None,
        "since": query.since.isoformat() if query.since is not None else None,
        "until": query.until.isoformat() if query.until is not None else None,
    }
    return await paginate(
        session,
        statement,
        pagination=PageRequest(limit=query.limit, cursor=query.cursor),
        keyset=keyset,
        codec=cursors,
        scope=scope,
    )


# Task outputs.


def _output_not_found(run_id: uuid.UUID, task_id: str) -> NotFound:
    return NotFound(f"task {task_id!r} of run {run_id} has no output", code="output_not_found")


async def get_output(
    session: AsyncSession, tenant_id: str, run_id: uuid.UUID, task_id: str
) -> RunTaskOutput:
    """A task's output: 404 `run_not_found` or `output_not_found`."""
    repository = RunRepository(session)
    output = await repository.get_output(tenant_id, run_id, task_id)
    if output is None:
        if await repository.get(tenant_id, run_id) is None:
            raise _run_not_found(tenant_id, run_id)
        raise _output_not_found(run_id, task_id)
    return output


async def put_output(
    session: AsyncSession,
    tenant_id: str,
    run_id: uuid.UUID,
    task_id: str,
    output: Any,
    *,
    policy: EffectivePolicy,
    max_bytes: int,
) -> tuple[RunTaskOutput, bool]:
    """Store a task's output; (the stored output, whether it was created). The same document
    again changes nothing; a different one replaces it, unless the run is final (409
    `run_finished`)."""
    size = _compact(output, "the output", "invalid_output")
    if size > max_bytes:
        raise OutputTooLarge(
            {"message": f"the output takes {size} bytes; the limit is {max_bytes} "
             "(MEMORY_MAX_TASK_OUTPUT_BYTES)", "size_bytes": size, "limit_bytes": max_bytes}
        )
    repository = RunRepository(session)
    # The run's row lock orders concurrent writers of its outputs and a status change.
    run = await repository.get(tenant_id, run_id, lock=True)
    if run is None:
        raise _run_not_found(tenant_id, run_id)
    existing = await repository.get_output(tenant_id, run_id, task_id)
    if existing is not None and existing.output == output:
        return existing, False
    if RunStatus(run.status) in TERMINAL_STATUSES:
        raise Conflict(
            f"run {run_id} is {run.status}: its task outputs are final",
            code="run_finished",
        )
    await _check_quota(
        session, policy, 0, size - (existing.output_bytes if existing is not None else 0)
    )
    stored = await repository.put_output(tenant_id, run_id, task_id, output, size)
    return stored, existing is None


# Retention and the admin stats.


async def delete_runs_created_before(
    session: AsyncSession,
    cutoff: datetime,
    *,
    tenants: Sequence[str] | None,
    exclude: Sequence[str] = (),
    dry_run: bool = False,
) -> int:
    """Delete (or, with `dry_run`, count) the runs created before `cutoff` of the tenants listed
    (None: every tenant) but those excluded, with their task outputs."""
    return await RunRepository(session).delete_created_before(
        cutoff, tenants=tenants, exclude=exclude, dry_run=dry_run
    )


async def count_runs(session: AsyncSession) -> dict[str, int]:
    """Runs across every tenant (`runs`) and those not yet final (`runs_active`)."""
    return await RunRepository(session).totals()
