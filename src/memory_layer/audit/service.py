"""The audit log: who did what, when, to which tenant, with counts; never content.

Other domains call `record(session, action, actor=..., tenant_id=..., target=..., counts=...)`
with the session of the action itself, so the entry commits (or rolls back) with it. `actor` is
anything with a `label` and a `key_id` (an `auth.service.Principal`, or `CLI` / `SCHEDULER` for
work no API key asked for). The request id comes from the X-Request-ID header (kit), never from
the caller. The table refuses UPDATE and DELETE (a trigger); `purge_expired` is the one deletion
it lets through: entries older than MEMORY_AUDIT_RETENTION_DAYS.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.audit.repository import NEWEST_FIRST, AuditRepository
from memory_layer.kit.observability.logging import current_request_id
from memory_layer.kit.pagination import CursorCodec, Page, PageRequest, Scope, paginate
from memory_layer.models.audit import AuditAction, AuditEvent

__all__ = ["CLI", "SCHEDULER", "Actor", "AuditAction", "SystemActor", "list_events", "record"]


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


async def record(
    session: AsyncSession,
    action: AuditAction,
    *,
    actor: Actor,
    tenant_id: str | None,
    target: str | None = None,
    counts: Mapping[str, int] | None = None,
) -> None:
    """Append one entry in `session`'s transaction: it commits or rolls back with the action.

    `target` names what was acted on as `kind:id` (`message:<uuid>`, `user:<id>`,
    `tenant:<id>`); `counts` holds numbers only (rows deleted, lines imported), never content.
    """
    await AuditRepository(session).add(
        {
            "tenant_id": tenant_id,
            "action": action.value,
            "actor": actor.label,
            "key_id": actor.key_id,
            "target": target,
            "counts": dict(counts or {}),
            "request_id": current_request_id(),
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
