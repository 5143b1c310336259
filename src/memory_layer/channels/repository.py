"""SQL of channels: a tenant's registered channels and the daily byte counters of their quotas."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Select, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.kit.pagination import Keyset, SortOrder
from memory_layer.kit.tenant_config import note_config_change
from memory_layer.models.channel import Channel, ChannelUsage

# One statement per (channel, user) a write adds bytes to, in the writing transaction: it creates
# the day's counter or adds to it only while the sum stays within the quota, and returns the new
# sum; no row back means the quota would be passed. ON CONFLICT ... DO UPDATE locks the counter
# row and evaluates its WHERE on the latest committed sum, so concurrent writers of one user and
# channel queue here and are counted exactly (a rolled-back write takes its bytes back with it).
CONSUME_SQL = text("""
INSERT INTO channel_usage AS u (tenant_id, channel, user_id, day, bytes)
SELECT :tenant_id, :channel, :user_id, CAST(:day AS date), CAST(:bytes AS bigint)
WHERE CAST(:bytes AS bigint) <= CAST(:quota AS bigint)
ON CONFLICT (tenant_id, channel, user_id, day)
DO UPDATE SET bytes = u.bytes + excluded.bytes
WHERE u.bytes + excluded.bytes <= CAST(:quota AS bigint)
RETURNING bytes
""")


class NamePosition(BaseModel):
    """Where a page of channels ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str


BY_NAME = Keyset(NamePosition, {"name": Channel.name}, order=SortOrder.asc)


class ChannelRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def all(self, tenant_id: str) -> list[Channel]:
        result = await self.session.execute(
            select(Channel).where(Channel.tenant_id == tenant_id).order_by(Channel.name)
        )
        return list(result.scalars())

    def listing(self, tenant_id: str) -> Select[Any]:
        return select(Channel).where(Channel.tenant_id == tenant_id)

    async def get(self, tenant_id: str, name: str) -> Channel | None:
        result = await self.session.execute(
            select(Channel).where(Channel.tenant_id == tenant_id, Channel.name == name)
        )
        return result.scalar_one_or_none()

    async def upsert(self, tenant_id: str, name: str, values: dict[str, Any]) -> Channel:
        row = insert(Channel).values(tenant_id=tenant_id, name=name, **values)
        statement = row.on_conflict_do_update(
            index_elements=[Channel.tenant_id, Channel.name],
            set_={**{key: row.excluded[key] for key in values}, "updated_at": func.now()},
        ).returning(Channel)
        result = await self.session.execute(
            statement, execution_options={"populate_existing": True}
        )
        channel: Channel = result.scalar_one()
        note_config_change(self.session, tenant_id)
        return channel

    async def delete(self, tenant_id: str, name: str) -> int:
        result = await self.session.execute(
            delete(Channel)
            .where(Channel.tenant_id == tenant_id, Channel.name == name)
            .returning(Channel.name)
        )
        note_config_change(self.session, tenant_id)
        return len(result.all())

    async def consume(
        self, tenant_id: str, channel: str, user_id: str, day: date, nbytes: int, quota: int
    ) -> int | None:
        """Add `nbytes` to the day's counter if the sum stays within `quota`: the new sum, or
        None (nothing added)."""
        result = await self.session.execute(
            CONSUME_SQL,
            {"tenant_id": tenant_id, "channel": channel, "user_id": user_id, "day": day,
             "bytes": nbytes, "quota": quota},
        )
        value = result.scalar_one_or_none()
        return None if value is None else int(value)

    async def used(self, tenant_id: str, channel: str, user_id: str, day: date) -> int:
        result = await self.session.execute(
            select(ChannelUsage.bytes).where(
                ChannelUsage.tenant_id == tenant_id,
                ChannelUsage.channel == channel,
                ChannelUsage.user_id == user_id,
                ChannelUsage.day == day,
            )
        )
        value = result.scalar_one_or_none()
        return 0 if value is None else int(value)

    async def encrypted_batch(
        self, tenant_id: str | None, current_key: str, limit: int
    ) -> list[tuple[str, Any, str, bytes]]:
        """Up to `limit` encrypted messages under another key than `current_key`, locked (SKIP
        LOCKED: a second rotation works on other rows): (tenant, id, key id, ciphertext)."""
        where = "encryption_key_id IS NOT NULL AND encryption_key_id <> :current"
        params: dict[str, Any] = {"current": current_key, "limit": limit}
        if tenant_id is not None:
            where += " AND tenant_id = :tenant_id"
            params["tenant_id"] = tenant_id
        result = await self.session.execute(
            text(
                f"SELECT tenant_id, id, encryption_key_id, ciphertext FROM messages WHERE {where} "
                "ORDER BY tenant_id, id LIMIT :limit FOR UPDATE SKIP LOCKED"
            ),
            params,
        )
        return [(row.tenant_id, row.id, row.encryption_key_id, row.ciphertext) for row in result]

    async def count_encrypted(self, tenant_id: str | None, current_key: str) -> int:
        where = "encryption_key_id IS NOT NULL AND encryption_key_id <> :current"
        params: dict[str, Any] = {"current": current_key}
        if tenant_id is not None:
            where += " AND tenant_id = :tenant_id"
            params["tenant_id"] = tenant_id
        result = await self.session.execute(
            text(f"SELECT count(*) FROM messages WHERE {where}"), params
        )
        return int(result.scalar_one())

    async def rewrite_ciphertext(
        self, tenant_id: str, message_id: Any, key_id: str, ciphertext: bytes
    ) -> None:
        await self.session.execute(
            text(
                "UPDATE messages SET encryption_key_id = :key_id, ciphertext = :ciphertext "
                "WHERE tenant_id = :tenant_id AND id = :id"
            ),
            {"tenant_id": tenant_id, "id": message_id, "key_id": key_id, "ciphertext": ciphertext},
        )

    async def any_encrypted_channel(self) -> bool:
        """Whether any tenant has an encrypted channel, or any message is stored encrypted."""
        result = await self.session.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM channels WHERE encrypt) "
                "OR EXISTS (SELECT 1 FROM messages WHERE encryption_key_id IS NOT NULL)"
            )
        )
        return bool(result.scalar_one())
