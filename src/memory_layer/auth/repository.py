"""SQL for tenant-bound API keys."""

from __future__ import annotations

import uuid

from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.models.api_key import ApiKey


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        await self.session.flush()
        return key

    async def find_active_by_hash(self, key_hash: str) -> ApiKey | None:
        result = await self.session.execute(
            select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
        )
        return result.scalar_one_or_none()

    async def any_active(self) -> bool:
        result = await self.session.execute(
            select(exists().where(ApiKey.revoked_at.is_(None)))
        )
        return bool(result.scalar_one())

    async def list(self, tenant_id: str | None = None) -> list[ApiKey]:
        statement = select(ApiKey).order_by(ApiKey.tenant_id, ApiKey.created_at)
        if tenant_id is not None:
            statement = statement.where(ApiKey.tenant_id == tenant_id)
        result = await self.session.execute(statement)
        return list(result.scalars())

    async def revoke(self, key_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )
        await self.session.flush()
        return bool(result.rowcount)  # type: ignore[attr-defined]
