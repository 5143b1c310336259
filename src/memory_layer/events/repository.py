"""SQL of event streams: append (number, insert, notify), read, and the deletions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, Select, delete, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.kit.db.wakeups import CHANNEL
from memory_layer.kit.pagination import Keyset, SortOrder
from memory_layer.models.event import ConversationEvent, EventStream
from memory_layer.models.message import Message


class EventPosition(BaseModel):
    """Where a page of a stream ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int


OLDEST_FIRST = Keyset(EventPosition, {"seq": ConversationEvent.seq}, order=SortOrder.asc)
NEWEST_FIRST = Keyset(EventPosition, {"seq": ConversationEvent.seq}, order=SortOrder.desc)


def _unexpired() -> ColumnElement[bool]:
    return or_(ConversationEvent.expires_at.is_(None), ConversationEvent.expires_at > func.now())


# Deleting events deletes their descriptions' messages in the same statement: an event gone is
# gone from search too.
DELETE_WITH_MESSAGES_SQL = """
WITH gone AS (
    DELETE FROM conversation_events WHERE {condition}
    RETURNING tenant_id, message_id
), described AS (
    DELETE FROM messages m USING gone
    WHERE gone.message_id IS NOT NULL AND m.tenant_id = gone.tenant_id AND m.id = gone.message_id
    RETURNING 1
)
SELECT count(*) AS events, (SELECT count(*) FROM described) AS messages FROM gone
"""

# An erasure: the user's events, and (with include_unattributed) the unnamed events of the
# conversations in which the user is the only one named, by messages or events, as for messages.
ERASE_CONDITION = """
tenant_id = :tenant_id AND (user_id = :user_id{unattributed})
"""
UNATTRIBUTED = """
 OR (user_id IS NULL AND conversation_id IN (
    SELECT conversation_id FROM (
        SELECT conversation_id, user_id FROM messages
        WHERE tenant_id = :tenant_id AND user_id IS NOT NULL
        UNION ALL
        SELECT conversation_id, user_id FROM conversation_events
        WHERE tenant_id = :tenant_id AND user_id IS NOT NULL
    ) named
    GROUP BY conversation_id
    HAVING count(DISTINCT user_id) = 1 AND bool_and(user_id = :user_id)))
"""


class EventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def next_seq(self, tenant_id: str, conversation_id: str) -> int:
        """The stream's next number; the stream's row stays locked until the commit, so appends
        to one stream are numbered one after the other, without gaps."""
        statement = (
            pg_insert(EventStream)
            .values(tenant_id=tenant_id, conversation_id=conversation_id, last_seq=1)
            .on_conflict_do_update(
                index_elements=["tenant_id", "conversation_id"],
                set_={"last_seq": EventStream.last_seq + 1},
            )
            .returning(EventStream.last_seq)
        )
        return int((await self.session.execute(statement)).scalar_one())

    async def insert(self, values: dict[str, Any]) -> ConversationEvent:
        statement = insert(ConversationEvent).values(**values).returning(ConversationEvent)
        event = (await self.session.execute(statement)).scalar_one()
        await self.session.flush()
        return event

    async def notify(self, key: str) -> None:
        """Wake the stream's long-polling readers on every replica (delivered at commit)."""
        await self.session.execute(
            text("SELECT pg_notify(:channel, :key)"), {"channel": CHANNEL, "key": key}
        )

    async def link_message(self, tenant_id: str, message_id: uuid.UUID, seq: int) -> None:
        """Name the event's seq in its description message's metadata (`event_seq`)."""
        await self.session.execute(
            update(Message)
            .where(Message.tenant_id == tenant_id, Message.id == message_id)
            .values(metadata_=Message.metadata_.op("||")(func.jsonb_build_object("event_seq", seq)))
        )

    @staticmethod
    def listing(
        tenant_id: str, conversation_id: str, *, after: int | None, types: Sequence[str] | None
    ) -> Select[ConversationEvent]:
        statement = select(ConversationEvent).where(
            ConversationEvent.tenant_id == tenant_id,
            ConversationEvent.conversation_id == conversation_id,
            _unexpired(),
        )
        if after is not None:
            statement = statement.where(ConversationEvent.seq > after)
        if types:
            statement = statement.where(ConversationEvent.type.in_(types))
        return statement

    async def last_seq(self, tenant_id: str, conversation_id: str) -> int:
        value = (
            await self.session.execute(
                select(EventStream.last_seq).where(
                    EventStream.tenant_id == tenant_id,
                    EventStream.conversation_id == conversation_id,
                )
            )
        ).scalar_one_or_none()
        return int(value) if value is not None else 0

    async def _delete_with_messages(self, condition: str, params: dict[str, Any]) -> tuple[int, int]:
        row = (
            await self.session.execute(
                text(DELETE_WITH_MESSAGES_SQL.format(condition=condition)), params
            )
        ).one()
        await self.session.flush()
        return int(row.events), int(row.messages)

    async def delete_conversation(self, tenant_id: str, conversation_id: str) -> int:
        """The conversation's events and its stream counter (its messages go with the
        conversation's)."""
        result = await self.session.execute(
            delete(ConversationEvent).where(
                ConversationEvent.tenant_id == tenant_id,
                ConversationEvent.conversation_id == conversation_id,
            )
        )
        await self.session.execute(
            delete(EventStream).where(
                EventStream.tenant_id == tenant_id, EventStream.conversation_id == conversation_id
            )
        )
        await self.session.flush()
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def delete_of_user(
        self, tenant_id: str, user_id: str, *, include_unattributed: bool
    ) -> tuple[int, int]:
        condition = ERASE_CONDITION.format(
            unattributed=UNATTRIBUTED if include_unattributed else ""
        )
        return await self._delete_with_messages(
            condition, {"tenant_id": tenant_id, "user_id": user_id}
        )

    @staticmethod
    def _scope(tenants: Sequence[str] | None, exclude: Sequence[str]) -> tuple[str, dict[str, Any]]:
        parts: list[str] = []
        params: dict[str, Any] = {}
        if tenants is not None:
            parts.append("tenant_id = ANY(:tenants)")
            params["tenants"] = list(tenants)
        if exclude:
            parts.append("NOT (tenant_id = ANY(:exclude))")
            params["exclude"] = list(exclude)
        return "".join(f" AND {part}" for part in parts), params

    async def delete_expired(self, tenants: Sequence[str] | None) -> tuple[int, int]:
        scope, params = self._scope(tenants, ())
        return await self._delete_with_messages(
            f"expires_at IS NOT NULL AND expires_at <= now(){scope}", params
        )

    async def delete_older_than(
        self, tenants: Sequence[str] | None, exclude: Sequence[str], cutoff: datetime
    ) -> tuple[int, int]:
        scope, params = self._scope(tenants, exclude)
        return await self._delete_with_messages(
            f"created_at < :cutoff{scope}", {**params, "cutoff": cutoff}
        )

    async def count(self) -> int:
        result = await self.session.execute(
            select(func.count()).select_from(ConversationEvent).where(_unexpired())
        )
        return int(result.scalar_one())
