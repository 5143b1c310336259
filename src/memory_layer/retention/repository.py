"""SQL of retention runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.models.message import Message


@dataclass(frozen=True)
class Scope:
    """Which messages a rule looks at: the tenants listed (None: all) except those excluded
    (they follow policies of their own), of the kinds listed (None: all)."""

    tenants: Sequence[str] | None = None
    exclude: Sequence[str] = ()
    kinds: Sequence[str] | None = None

    def conditions(self) -> list[Any]:
        conditions: list[Any] = []
        if self.tenants is not None:
            conditions.append(Message.tenant_id.in_(self.tenants))
        if self.exclude:
            conditions.append(Message.tenant_id.not_in(self.exclude))
        if self.kinds is not None:
            conditions.append(Message.kind.in_(self.kinds))
        return conditions


class RetentionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @staticmethod
    def _conditions(
        scope: Scope, cutoff: datetime, importance_below: float | None
    ) -> list[Any]:
        conditions: list[Any] = [Message.created_at < cutoff, *scope.conditions()]
        if importance_below is not None:
            conditions.append(Message.importance < importance_below)
        return conditions

    async def try_lock(self) -> bool:
        """Transaction-scoped advisory lock so retention runs never overlap."""
        result = await self.session.execute(
            text("SELECT pg_try_advisory_xact_lock(hashtext('memory-layer:retention'))")
        )
        return bool(result.scalar_one())

    async def count_candidates(
        self, scope: Scope, cutoff: datetime, importance_below: float | None, *,
        include_archived: bool,
    ) -> int:
        conditions = self._conditions(scope, cutoff, importance_below)
        if not include_archived:
            conditions.append(Message.archived_at.is_(None))
        result = await self.session.execute(
            select(func.count()).select_from(Message).where(and_(*conditions))
        )
        return int(result.scalar_one())

    async def archive_older_than(
        self, scope: Scope, cutoff: datetime, importance_below: float | None
    ) -> int:
        conditions = self._conditions(scope, cutoff, importance_below)
        conditions.append(Message.archived_at.is_(None))
        result = await self.session.execute(
            update(Message).where(and_(*conditions)).values(archived_at=func.now())
        )
        await self.session.flush()
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def delete_older_than(
        self, scope: Scope, cutoff: datetime, importance_below: float | None
    ) -> int:
        conditions = self._conditions(scope, cutoff, importance_below)
        result = await self.session.execute(delete(Message).where(and_(*conditions)))
        await self.session.flush()
        return int(result.rowcount)  # type: ignore[attr-defined]

    def _expired(self, scope: Scope) -> list[Any]:
        # Through the partial index on expires_at.
        return [Message.expires_at.is_not(None), Message.expires_at <= func.now(), *scope.conditions()]

    async def count_expired(self, scope: Scope) -> int:
        result = await self.session.execute(
            select(func.count()).select_from(Message).where(*self._expired(scope))
        )
        return int(result.scalar_one())

    async def delete_expired(self, scope: Scope) -> int:
        result = await self.session.execute(delete(Message).where(*self._expired(scope)))
        await self.session.flush()
        return int(result.rowcount)  # type: ignore[attr-defined]
