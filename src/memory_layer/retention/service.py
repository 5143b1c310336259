"""Retention: archive or delete old, unimportant messages, never two runs at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.config import RetentionAction, Settings
from memory_layer.kit.cache import note_write
from memory_layer.kit.errors import Conflict
from memory_layer.retention.repository import RetentionRepository


@dataclass(frozen=True)
class RetentionParams:
    """One run; None takes the MEMORY_RETENTION_* setting."""

    tenant_id: str | None = None
    older_than_days: float | None = None
    importance_below: float | None = None
    action: RetentionAction | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class RetentionReport:
    dry_run: bool
    action: RetentionAction
    cutoff: datetime
    importance_below: float
    tenants: list[str] | None
    matched: int
    archived: int
    deleted: int


async def run_retention(
    session: AsyncSession, params: RetentionParams, *, settings: Settings
) -> RetentionReport:
    """Archive (or delete) messages older than the cutoff whose importance is under the threshold."""
    repository = RetentionRepository(session)
    if not await repository.try_lock():
        raise Conflict(
            "another retention run is in progress; try again when it has finished",
            code="retention_in_progress",
        )
    action = params.action or settings.retention_action
    older_than_days = params.older_than_days or settings.retention_max_age_days
    importance_below = (
        params.importance_below
        if params.importance_below is not None
        else settings.retention_importance_threshold
    )
    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
    configured = list(settings.retention_tenants) or None
    tenants = [params.tenant_id] if params.tenant_id is not None else configured

    archived = deleted = 0
    if params.dry_run:
        matched = await repository.count_candidates(
            tenants, cutoff, importance_below,
            include_archived=action is RetentionAction.delete,
        )
    elif action is RetentionAction.archive:
        archived = matched = await repository.archive_older_than(tenants, cutoff, importance_below)
    else:
        deleted = matched = await repository.delete_older_than(tenants, cutoff, importance_below)
    if archived or deleted:
        for tenant_id in tenants if tenants is not None else [None]:
            note_write(session, tenant_id)
    return RetentionReport(
        dry_run=params.dry_run,
        action=action,
        cutoff=cutoff,
        importance_below=importance_below,
        tenants=tenants,
        matched=matched,
        archived=archived,
        deleted=deleted,
    )
