"""Retention: archive or delete old, unimportant messages, never two runs at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.config import RetentionAction, Settings
from memory_layer.errors import Conflict
from memory_layer.repositories.messages import MessageRepository
from memory_layer.schemas.admin import RetentionRequest, RetentionResponse


async def run_retention(
    session: AsyncSession, request: RetentionRequest, *, settings: Settings
) -> RetentionResponse:
    """Archive (or delete) messages older than the cutoff whose importance is under the threshold."""
    repository = MessageRepository(session)
    if not await repository.try_retention_lock():
        raise Conflict(
            "another retention run is in progress; try again when it has finished",
            code="retention_in_progress",
        )
    action = request.action or settings.retention_action
    older_than_days = request.older_than_days or settings.retention_max_age_days
    importance_below = (
        request.importance_below
        if request.importance_below is not None
        else settings.retention_importance_threshold
    )
    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
    tenants: list[str] | None
    if request.tenant_id is not None:
        tenants = [request.tenant_id]
    else:
        tenants = list(settings.retention_tenants) or None

    archived = deleted = 0
    if request.dry_run:
        matched = await repository.count_retention_candidates(
            tenants, cutoff, importance_below,
            include_archived=action is RetentionAction.delete,
        )
    elif action is RetentionAction.archive:
        archived = matched = await repository.archive_older_than(tenants, cutoff, importance_below)
    else:
        deleted = matched = await repository.delete_older_than(tenants, cutoff, importance_below)
    return RetentionResponse(
        dry_run=request.dry_run,
        action=action,
        cutoff=cutoff,
        importance_below=importance_below,
        tenants=tenants,
        matched=matched,
        archived=archived,
        deleted=deleted,
    )
