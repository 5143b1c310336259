"""Retention: archive or delete old messages and delete expired ones, never two runs at once.

A run follows each tenant's policy (policies/): archive after N days (messages less important
than its threshold), delete after N days, per kind where the policy says so. A run given an
explicit rule (older_than_days, importance_below or action) applies that rule instead, to every
tenant in scope. Every run deletes the messages whose TTL has passed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.audit import service as audit
from memory_layer.config import RetentionAction, Settings
from memory_layer.conversations import service as conversations
from memory_layer.events import service as events
from memory_layer.kit.cache import note_write
from memory_layer.kit.errors import Conflict
from memory_layer.models.audit import AuditAction
from memory_layer.models.message import Kind
from memory_layer.policies.service import EffectivePolicy, all_policies, default_policy
from memory_layer.retention.repository import RetentionRepository, Scope
from memory_layer.runs import service as runs


@dataclass(frozen=True)
class RetentionParams:
    """One run. With none of older_than_days, importance_below and action, each tenant's policy
    applies; with any of them, that one rule (the others from MEMORY_RETENTION_*)."""

    tenant_id: str | None = None
    older_than_days: float | None = None
    importance_below: float | None = None
    action: RetentionAction | None = None
    dry_run: bool = False

    @property
    def by_policy(self) -> bool:
        return self.older_than_days is None and self.importance_below is None and self.action is None


@dataclass(frozen=True)
class RetentionReport:
    dry_run: bool
    by_policy: bool
    # The explicit rule's; None when the run followed the tenants' policies.
    action: RetentionAction | None
    cutoff: datetime | None
    importance_below: float | None
    tenants: list[str] | None
    matched: int
    archived: int
    deleted: int
    expired: int
    runs_deleted: int = 0


@dataclass
class _Counts:
    matched: int = 0
    archived: int = 0
    deleted: int = 0
    events_deleted: int = 0
    runs_deleted: int = 0


async def _apply_policy(
    repository: RetentionRepository,
    policy: EffectivePolicy,
    scope: Scope,
    now: datetime,
    dry_run: bool,
    counts: _Counts,
) -> None:
    """One policy on the messages in `scope`: kinds that share (archive, delete) ages share
    statements; deletion first, so archiving never touches a row about to go."""
    if policy.delete_after_days > 0:
        # Runs as messages: created before the tenant's delete_after_days, they go.
        counts.runs_deleted += await runs.delete_runs_created_before(
            repository.session,
            now - timedelta(days=policy.delete_after_days),
            tenants=scope.tenants,
            exclude=scope.exclude,
            dry_run=dry_run,
        )
    rules: dict[tuple[float, float], list[str]] = defaultdict(list)
    for kind in Kind:
        rules[policy.retention_of(kind)].append(kind.value)
    for (archive_days, delete_days), kinds in rules.items():
        narrowed = Scope(scope.tenants, scope.exclude, None if len(kinds) == len(Kind) else kinds)
        if delete_days > 0:
            cutoff = now - timedelta(days=delete_days)
            if not dry_run and Kind.event.value in kinds:
                # Events (and their description messages) age as memories of kind `event`.
                counts.events_deleted += await events.delete_events_older_than(
                    repository.session, scope.tenants, scope.exclude, cutoff
                )
            if dry_run:
                counts.matched += await repository.count_candidates(
                    narrowed, cutoff, None, include_archived=True
                )
            else:
                deleted = await repository.delete_older_than(narrowed, cutoff, None)
                counts.deleted += deleted
                counts.matched += deleted
        if archive_days > 0 and (delete_days == 0 or archive_days < delete_days):
            cutoff = now - timedelta(days=archive_days)
            below = policy.retention_importance_below
            if dry_run:
                counts.matched += await repository.count_candidates(
                    narrowed, cutoff, below, include_archived=False
                )
            else:
                archived = await repository.archive_older_than(narrowed, cutoff, below)
                counts.archived += archived
                counts.matched += archived


async def run_retention(
    session: AsyncSession,
    params: RetentionParams,
    *,
    settings: Settings,
    actor: audit.Actor,
) -> RetentionReport:
    """Apply the tenants' retention policies (or the run's explicit rule), then delete expired
    messages; `dry_run` only counts."""
    repository = RetentionRepository(session)
    if not await repository.try_lock():
        raise Conflict(
            "another retention run is in progress; try again when it has finished",
            code="retention_in_progress",
        )
    # Unset, or `*` (the earlier README's spelling), means every tenant found.
    configured = (
        None
        if not settings.retention_tenants or "*" in settings.retention_tenants
        else list(settings.retention_tenants)
    )
    tenants = [params.tenant_id] if params.tenant_id is not None else configured
    now = datetime.now(UTC)
    counts = _Counts()
    action: RetentionAction | None = None
    cutoff: datetime | None = None
    importance_below: float | None = None

    if params.by_policy:
        own = [
            policy for policy in await all_policies(session, settings)
            if tenants is None or policy.tenant_id in tenants
        ]
        for policy in own:
            scope = Scope(tenants=[policy.tenant_id])
            await _apply_policy(repository, policy, scope, now, params.dry_run, counts)
        # Every other tenant in scope follows the defaults, in one set of statements.
        rest = Scope(tenants=tenants, exclude=[policy.tenant_id for policy in own])
        await _apply_policy(repository, default_policy(settings), rest, now, params.dry_run, counts)
    else:
        action = params.action or settings.retention_action
        older_than_days = params.older_than_days or settings.retention_max_age_days
        importance_below = (
            params.importance_below
            if params.importance_below is not None
            else settings.retention_importance_threshold
        )
        cutoff = now - timedelta(days=older_than_days)
        scope = Scope(tenants=tenants)
        if params.dry_run:
            counts.matched = await repository.count_candidates(
                scope, cutoff, importance_below,
                include_archived=action is RetentionAction.delete,
            )
        elif action is RetentionAction.archive:
            counts.archived = counts.matched = await repository.archive_older_than(
                scope, cutoff, importance_below
            )
        else:
            counts.deleted = counts.matched = await repository.delete_older_than(
                scope, cutoff, importance_below
            )
            # Events carry no importance: an explicit delete rule takes them by age alone.
            counts.events_deleted = await events.delete_events_older_than(
                session, tenants, (), cutoff
            )

    everyone = Scope(tenants=tenants)
    expired = (
        await repository.count_expired(everyone)
        if params.dry_run
        else await repository.delete_expired(everyone)
    )
    states_deleted = audit_deleted = 0
    if not params.dry_run:
        # Expired working memory is already invisible; this frees its rows.
        states_deleted = await conversations.delete_expired_states(session, params.tenant_id)
        counts.events_deleted += await events.delete_expired_events(session, tenants)
        if params.tenant_id is None:
            audit_deleted = await audit.purge_expired(session, settings.audit_retention_days)
        await audit.record(
            session,
            AuditAction.retention_run,
            actor=actor,
            tenant_id=params.tenant_id,
            counts={
                "matched": counts.matched,
                "archived": counts.archived,
                "deleted": counts.deleted,
                "expired": expired,
                "runs_deleted": counts.runs_deleted,
                "conversation_states_deleted": states_deleted,
                "events_deleted": counts.events_deleted,
                "audit_events_deleted": audit_deleted,
            },
        )
    if not params.dry_run and (counts.archived or counts.deleted or expired):
        for tenant_id in tenants if tenants is not None else [None]:
            note_write(session, tenant_id)
    return RetentionReport(
        dry_run=params.dry_run,
        by_policy=params.by_policy,
        action=action,
        cutoff=cutoff,
        importance_below=importance_below,
        tenants=tenants,
        matched=counts.matched,
        archived=counts.archived,
        deleted=counts.deleted,
        expired=expired,
        runs_deleted=counts.runs_deleted,
    )
