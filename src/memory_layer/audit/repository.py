"""SQL of the audit log: append, list, and the log's own retention."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, literal, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.models.audit import AuditEvent


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, values: dict[str, Any]) -> None:
        await self.session.execute(insert(AuditEvent).values(id=uuid.uuid4(), **values))

    async def list(
        self,
        *,
        tenant_id: str | None,
        action: str | None,
        since: datetime | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[AuditEvent]:
        """Newest first, in (occurred_at, id) order."""
        statement = select(AuditEvent)
        if tenant_id is not None:
            statement = statement.where(AuditEvent.tenant_id == tenant_id)
        if action is not None:
            statement = statement.where(AuditEvent.action == action)
        if since is not None:
            statement = statement.where(AuditEvent.occurred_at >= since)
        if after is not None:
            statement = statement.where(
                tuple_(AuditEvent.occurred_at, AuditEvent.id)
                < tuple_(
                    literal(after[0], AuditEvent.occurred_at.type),
                    literal(after[1], AuditEvent.id.type),
                )
            )
        statement = statement.order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
        return list((await self.session.execute(statement.limit(limit))).scalars())

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
