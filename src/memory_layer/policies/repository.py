"""SQL of tenant policies and of the usage counters quotas are checked on."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.kit.tenant_config import note_config_change
from memory_layer.models.policy import ConversationUsage, TenantPolicy, TenantUsage

# Creates the counter row if the tenant has none yet and locks it until the transaction ends:
# a tenant's quota-checked writes queue here, so two of them never both pass on the same count.
# The no-op DO UPDATE is what takes the row lock (DO NOTHING would not, nor return the row).
LOCK_USAGE_SQL = text("""
INSERT INTO tenant_usage (tenant_id) VALUES (:tenant_id)
ON CONFLICT (tenant_id) DO UPDATE SET tenant_id = excluded.tenant_id
RETURNING messages, content_bytes
""")

# The same for the counter rows of a tenant's conversations, created if missing, locked in key
# order (the order the usage triggers upsert them in).
LOCK_CONVERSATIONS_SQL = text("""
INSERT INTO conversation_usage (tenant_id, conversation_id)
SELECT :tenant_id, conversation_id FROM unnest(CAST(:conversation_ids AS text[])) AS conversation_id
ORDER BY conversation_id
ON CONFLICT (tenant_id, conversation_id) DO UPDATE SET tenant_id = excluded.tenant_id
RETURNING conversation_id, messages
""")


# Read on every write and every tenant-limited request: one Core statement built once, the row
# turned into a detached TenantPolicy (the ORM's select of the mapped class cost a POST more than
# the rest of the policy's handling; docs/benchmarks.md).
POLICIES = cast(Table, TenantPolicy.__table__)
POLICY_BY_TENANT = select(POLICIES).where(POLICIES.c.tenant_id == bindparam("tenant_id"))


class PolicyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, tenant_id: str) -> TenantPolicy | None:
        """The tenant's stored overrides (not tracked by the session), or None."""
        row = (await self.session.execute(POLICY_BY_TENANT, {"tenant_id": tenant_id})).first()
        return None if row is None else TenantPolicy(**row._mapping)

    async def all(self) -> list[TenantPolicy]:
        """Every stored policy (one row per tenant that has overrides: a small table)."""
        result = await self.session.execute(select(TenantPolicy).order_by(TenantPolicy.tenant_id))
        return list(result.scalars())

    async def upsert(self, tenant_id: str, values: dict[str, Any]) -> TenantPolicy:
        row = insert(TenantPolicy).values(tenant_id=tenant_id, **values)
        statement = row.on_conflict_do_update(
            index_elements=[TenantPolicy.tenant_id],
            set_={**{name: row.excluded[name] for name in values}, "updated_at": func.now()},
        ).returning(TenantPolicy)
        result = await self.session.execute(
            statement, execution_options={"populate_existing": True}
        )
        policy: TenantPolicy = result.scalar_one()
        note_config_change(self.session, tenant_id)
        return policy

    async def lock_usage(self, tenant_id: str) -> tuple[int, int]:
        """The tenant's (messages, content bytes), its counter row locked until commit."""
        row = (await self.session.execute(LOCK_USAGE_SQL, {"tenant_id": tenant_id})).one()
        return int(row.messages), int(row.content_bytes)

    async def usage(self, tenant_id: str) -> tuple[int, int]:
        """The tenant's (messages, content bytes), unlocked."""
        result = await self.session.execute(
            select(TenantUsage.messages, TenantUsage.content_bytes).where(
                TenantUsage.tenant_id == tenant_id
            )
        )
        row = result.one_or_none()
        return (0, 0) if row is None else (int(row.messages), int(row.content_bytes))

    async def lock_conversations(
        self, tenant_id: str, conversation_ids: list[str]
    ) -> dict[str, int]:
        """Messages of each of the tenant's conversations, their counter rows locked until commit."""
        result = await self.session.execute(
            LOCK_CONVERSATIONS_SQL,
            {"tenant_id": tenant_id, "conversation_ids": conversation_ids},
        )
        return {row.conversation_id: int(row.messages) for row in result}

    async def conversation_counts(
        self, tenant_id: str, conversation_ids: list[str]
    ) -> dict[str, int]:
        """Messages of each of the tenant's conversations (a conversation without a row has none)."""
        result = await self.session.execute(
            select(ConversationUsage.conversation_id, ConversationUsage.messages).where(
                ConversationUsage.tenant_id == tenant_id,
                ConversationUsage.conversation_id.in_(conversation_ids),
            )
        )
        return {row.conversation_id: int(row.messages) for row in result}
