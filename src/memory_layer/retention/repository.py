"""SQL of retention runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.models.message import Message


class RetentionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @staticmethod
    def _conditions(
        tenants: list[str] | None, cutoff: datetime, importance_below: float
    ) -> list[Any]:
        conditions: list[Any] = [
            Message.created_at < cutoff,
            Message.importance < importance_below,
        ]
        if tenants is not None:
            conditions.append(Message.tenant_id.in_(tenants))
        return conditions

    async def try_lock(self) -> bool:
        """Transaction-scoped advisory lock so retention runs never overlap."""
        result = await self.session.execute(
            text("SELECT pg_try_advisory_xact_lock(hashtext('memory-layer:retention'))")
        )
        return bool(result.scalar_one())

    async def count_candidates(
        self, tenants: list[str] | None, cutoff: datetime, importance_below: float, *,
        include_archived: bool,
    ) -> int:
        conditions = self._conditions(tenants, cutoff, importance_below)
        if not include_archived:
            conditions.append(Message.archived_at.is_(None))
        result = await self.session.execute(
            select(func.count()).select_from(Message).where(and_(*conditions))
        )
        return int(result.scalar_one())

    async def archive_older_than(
        self, tenants: list[str] | None, cutoff: datetime, importance_below: float
    ) -> int:
        conditions = self._conditions(tenants, cutoff, importance_below)
        conditions.append(Message.archived_at.is_(None))
        result = await self.session.execute(
            update(Message).where(and_(*conditions)).values(archived_at=func.now())
        )
        await self.session.flush()
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def delete_older_than(
        self, tenants: list[str] | None, cutoff: datetime, importance_below: float
    ) -> int:
        conditions = self._conditions(tenants, cutoff, importance_below)
        result = await self.session.execute(delete(Message).where(and_(*conditions)))
        await self.session.flush()
        return int(result.rowcount)  # type: ignore[attr-defined]
