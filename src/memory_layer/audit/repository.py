"""SQL of the audit log: append, list, and the log's own retention."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import Select, delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.kit.pagination import Keyset, SortOrder
from memory_layer.models.audit import AuditEvent


class AuditPosition(BaseModel):
    """Where a page of audit entries ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    occurred_at: AwareDatetime
    id: uuid.UUID


NEWEST_FIRST = Keyset(
    AuditPosition,
    {"occurred_at": AuditEvent.occurred_at, "id": AuditEvent.id},
    order=SortOrder.desc,
)


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, values: dict[str, Any]) -> None:
        await self.session.execute(insert(AuditEvent).values(id=uuid.uuid4(), **values))

    def listing(
        self, *, tenant_id: str | None, action: str | None, since: datetime | None
    ) -> Select[AuditEvent]:
        """Audit entries (of one tenant, one action, since a time), to page in NEWEST_FIRST order."""
        statement = select(AuditEvent)
        if tenant_id is not None:
            statement = statement.where(AuditEvent.tenant_id == tenant_id)
        if action is not None:
            statement = statement.where(AuditEvent.action == action)
        if since is not None:
            statement = statement.where(AuditEvent.occurred_at >= since)
        return statement

    async def delete_older_than(self, days: int) -> int:
        """Delete entries older than `days`: the trigger lets this through only because the
        transaction declares the same horizon (transaction-local, gone at commit)."""
        await self.session.execute(
            text("SELECT set_config('memory.audit_retention_days', :days, true)"),
            {"days": str(days)},
        )
        result = await self.session.execute(
            delete(AuditEvent).where(
                AuditEvent.occurred_at < func.now() - func.make_interval(0, 0, 0, days)
            )
        )
        await self.session.execute(
            text("SELECT set_config('memory.audit_retention_days', '', true)")
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
