"""SQL for stored API keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, func, literal, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.models.api_key import ApiKey


@dataclass(frozen=True)
class FoundKey:
    key: ApiKey
    # Judged by the database's clock, the one every replica shares.
    expired: bool


def _unexpired() -> object:
    return or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > func.now())


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        await self.session.flush()
        return key

    async def find_active_by_hash(self, key_hash: str) -> FoundKey | None:
        """The unrevoked key with this hash, and whether it has expired."""
        expired = and_(ApiKey.expires_at.is_not(None), ApiKey.expires_at <= func.now())
        result = await self.session.execute(
            select(ApiKey, expired.label("expired")).where(
                ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None)
            )
        )
        row = result.one_or_none()
        return None if row is None else FoundKey(key=row[0], expired=bool(row[1]))

    async def any_active(self) -> bool:
        result = await self.session.execute(
            select(exists().where(ApiKey.revoked_at.is_(None), _unexpired()))  # type: ignore[arg-type]
        )
        return bool(result.scalar_one())

    async def page(
        self,
        *,
        tenant_id: str | None,
        include_revoked: bool,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[ApiKey]:
        """Newest first, in (created_at, id) order."""
        statement = select(ApiKey)
        if tenant_id is not None:
            statement = statement.where(ApiKey.tenant_id == tenant_id)
        if not include_revoked:
            statement = statement.where(ApiKey.revoked_at.is_(None))
        if after is not None:
            statement = statement.where(
                tuple_(ApiKey.created_at, ApiKey.id)
                < tuple_(
                    literal(after[0], ApiKey.created_at.type), literal(after[1], ApiKey.id.type)
                )
            )
        statement = statement.order_by(ApiKey.created_at.desc(), ApiKey.id.desc()).limit(limit)
        return list((await self.session.execute(statement)).scalars())

    async def list(self, tenant_id: str | None = None) -> list[ApiKey]:
        statement = select(ApiKey).order_by(ApiKey.tenant_id, ApiKey.created_at)
        if tenant_id is not None:
            statement = statement.where(ApiKey.tenant_id == tenant_id)
        result = await self.session.execute(statement)
        return list(result.scalars())

    async def revoke(self, key_id: uuid.UUID) -> ApiKey | None:
        """The key just revoked, or None when no unrevoked key has this id."""
        result = await self.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=func.now())
            .returning(ApiKey)
        )
        await self.session.flush()
        return result.scalar_one_or_none()
