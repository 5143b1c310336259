"""The audit log: who did what, when, to which tenant, with counts; never content.

Other domains call `record(session, action, actor=..., tenant_id=..., target=..., counts=...)`
with the session of the action itself, so the entry commits (or rolls back) with it. `actor` is
anything with a `label` and a `key_id` (an `auth.service.Principal`, or `CLI` / `SCHEDULER` for
work no API key asked for). The request id comes from the X-Request-ID header (kit), never from
the caller. The table refuses UPDATE and DELETE (a trigger); `purge_expired` is the one deletion
it lets through: entries older than MEMORY_AUDIT_RETENTION_DAYS.

Beyond those, a tenant's `audit_level` (its policy) has every write (`writes`) or every request
(`all`) of its data recorded as `api.write` / `api.read` by audit/deps.py around the route; the
services the route calls add what only they know with `note(target=..., **counts)` (a no-op
outside such a request).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.audit.repository import NEWEST_FIRST, AuditRepository
from memory_layer.kit.observability.logging import current_request_id
from memory_layer.kit.pagination import CursorCodec, Page, PageRequest, Scope, paginate
from memory_layer.models.audit import AuditAction, AuditEvent

__all__ = [
    "CLI",
    "SCHEDULER",
    "Actor",
    "AuditAction",
    "Notes",
    "SystemActor",
    "list_events",
    "note",
    "record",
]


class Actor(Protocol):
    """Who acted: `auth.service.Principal` is one."""

    @property
    def label(self) -> str: ...

    @property
    def key_id(self) -> uuid.UUID | None: ...


@dataclass(frozen=True)
class SystemActor:
    """An actor that is no API key: the command line, the retention scheduler."""

    label: str
    key_id: uuid.UUID | None = None


CLI = SystemActor("cli")
SCHEDULER = SystemActor("scheduler")


@dataclass
class Notes:
    """What the services of one audited request add to its `api.write` / `api.read` entry."""

    target: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    # The request recorded an entry of its own (a deletion): the route's entry would repeat it.
    recorded: bool = False


# The notes of the request being served, when its tenant's audit level records it.
current_notes: ContextVar[Notes | None] = ContextVar("audit_notes", default=None)


def note(*, target: str | None = None, **counts: int) -> None:
    """Add `target` (`kind:id`) and counts (numbers only, never content) to the audited request's
    entry; nothing when the request is not audited."""
    notes = current_notes.get()
    if notes is None:
        return
    if target is not None:
        notes.target = target
    notes.counts.update(counts)


async def record(
    session: AsyncSession,
    action: AuditAction,
    *,
    actor: Actor,
    tenant_id: str | None,
    target: str | None = None,
    counts: Mapping[str, int] | None = None,
    route: str | None = None,
) -> None:
    """Append one entry in `session`'s transaction: it commits or rolls back with the action.

    `target` names what was acted on as `kind:id` (`message:<uuid>`, `user:<id>`,
    `tenant:<id>`); `counts` holds numbers only (rows deleted, lines imported), never content;
    `route` the `METHOD /path` of an `api.write` / `api.read` entry.
    """
    notes = current_notes.get()
    if notes is not None and action not in (AuditAction.api_write, AuditAction.api_read):
        notes.recorded = True
    await AuditRepository(session).add(
        {
            "tenant_id": tenant_id,
            "action": action.value,
            "actor": actor.label,
            "key_id": actor.key_id,
            "target": target,
            "counts": dict(counts or {}),
            "request_id": current_request_id(),
            "route": route,
        }
    )


async def list_events(
    session: AsyncSession,
    *,
    tenant_id: str | None,
    action: AuditAction | None,
    since: datetime | None,
    limit: int,
    cursor: str | None,
    cursors: CursorCodec,
) -> Page[AuditEvent]:
    """Audit entries, newest first, optionally of one tenant, one action, since a time."""
    scope: Scope = {
        "listing": "audit_events",
        "tenant_id": tenant_id,
        "action": action.value if action is not None else None,
        "since": since.isoformat() if since is not None else None,
    }
    return await paginate(
        session,
        AuditRepository(session).listing(
            tenant_id=tenant_id, action=action.value if action is not None else None, since=since
        ),
        pagination=PageRequest(limit, cursor),
        keyset=NEWEST_FIRST,
        codec=cursors,
        scope=scope,
    )


async def purge_expired(session: AsyncSession, retention_days: int) -> int:
    """Delete entries older than `retention_days` (0 keeps them forever); how many went."""
    if retention_days <= 0:
        return 0
    return await AuditRepository(session).delete_older_than(retention_days)
