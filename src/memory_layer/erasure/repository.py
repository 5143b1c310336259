"""SQL of erasure: delete one user's messages in a statement, record it, list the records."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import Select, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.kit.pagination import Keyset, SortOrder
from memory_layer.models.erasure import Erasure


class ErasurePosition(BaseModel):
    """Where a page of erasure records ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    erased_at: AwareDatetime
    id: uuid.UUID


NEWEST_FIRST = Keyset(
    ErasurePosition, {"erased_at": Erasure.erased_at, "id": Erasure.id}, order=SortOrder.desc
)

# The conversations this user is the only one named in ("owned"): every message there either
# carries this user_id or none (the assistant's replies, system and tool turns usually carry
# none). With `include_unattributed`, those unnamed messages go too: they are part of this
# person's conversation and often repeat what the person said. Conversations that name other
# users too keep everything but this user's own messages.
ERASE_SQL = """
WITH named_in AS (
    SELECT DISTINCT conversation_id FROM messages
    WHERE tenant_id = :tenant_id AND user_id = :user_id
), owned AS (
    SELECT m.conversation_id
    FROM messages m JOIN named_in USING (conversation_id)
    WHERE m.tenant_id = :tenant_id
    GROUP BY m.conversation_id
    HAVING count(DISTINCT m.user_id) = 1
), gone AS (
    DELETE FROM messages
    WHERE tenant_id = :tenant_id
      AND (user_id = :user_id{unattributed})
    RETURNING user_id IS NOT NULL AS named, conversation_id
)
SELECT count(*) FILTER (WHERE named) AS user_messages,
       count(*) FILTER (WHERE NOT named) AS unattributed_messages,
       count(DISTINCT conversation_id) AS conversations
FROM gone
"""
UNATTRIBUTED = " OR (user_id IS NULL AND conversation_id IN (SELECT conversation_id FROM owned))"


@dataclass(frozen=True)
class ErasedCounts:
    user_messages: int
    unattributed_messages: int
    conversations: int


class ErasureRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def delete_user_messages(
        self, tenant_id: str, user_id: str, *, include_unattributed: bool
    ) -> ErasedCounts:
        """Delete the user's messages (and, optionally, the unnamed ones of their own
        conversations) in one statement; archived messages and pending embeddings included."""
        sql = ERASE_SQL.format(unattributed=UNATTRIBUTED if include_unattributed else "")
        row = (
            await self.session.execute(text(sql), {"tenant_id": tenant_id, "user_id": user_id})
        ).one()
        return ErasedCounts(
            user_messages=int(row.user_messages),
            unattributed_messages=int(row.unattributed_messages),
            conversations=int(row.conversations),
        )

    async def record(
        self, tenant_id: str, user_id: str, principal: str, counts: dict[str, Any]
    ) -> Erasure:
        statement = (
            insert(Erasure)
            .values(
                tenant_id=tenant_id,
                id=uuid.uuid4(),
                user_id=user_id,
                principal=principal,
                counts=counts,
            )
            .returning(Erasure)
        )
        erasure = (await self.session.execute(statement)).scalar_one()
        await self.session.flush()
        return erasure

    def listing(self, *, tenant_id: str | None, user_id: str | None) -> Select[Erasure]:
        """Erasure records (of one tenant, one user, or all), to page in NEWEST_FIRST order."""
        statement = select(Erasure)
        if tenant_id is not None:
            statement = statement.where(Erasure.tenant_id == tenant_id)
        if user_id is not None:
            statement = statement.where(Erasure.user_id == user_id)
        return statement
