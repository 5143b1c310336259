"""SQL for stored API keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import Select, and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.kit.pagination import Keyset, SortOrder
from memory_layer.models.api_key import ApiKey


@dataclass(frozen=True)
class FoundKey:
    key: ApiKey
    # Judged by the database's clock, the one every replica shares.
    expired: bool


class KeyPosition(BaseModel):
    """Where a page of keys ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    created_at: AwareDatetime
    id: uuid.UUID


NEWEST_FIRST = Keyset(
    KeyPosition, {"created_at": ApiKey.created_at, "id": ApiKey.id}, order=SortOrder.desc
)


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

    def listing(self, *, tenant_id: str | None, include_revoked: bool) -> Select[ApiKey]:
        """Stored keys (of one tenant, or all), to page in NEWEST_FIRST order."""
        statement = select(ApiKey)
        if tenant_id is not None:
            statement = statement.where(ApiKey.tenant_id == tenant_id)
        if not include_revoked:
            statement = statement.where(ApiKey.revoked_at.is_(None))
        return statement

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
