"""SQL of stats: every count of a tenant's messages in one statement."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# One scan of the tenant's messages (narrowed by user or conversation), four groupings at once:
# by role, by kind, by embedding status, and the total. GROUPING() says which grouping a row
# belongs to (a bit per column left out: 3 = by role, 5 = by kind, 6 = by status, 7 = total).
# The total row exists even when nothing matches (an empty grouping set always yields a row).
STATS_SQL = """
SELECT GROUPING(role, kind, embedding_status) AS grouping,
       role, kind, embedding_status,
       count(*) AS messages,
       count(archived_at) AS archived,
       count(DISTINCT conversation_id) AS conversations,
       count(DISTINCT user_id) AS users,
       coalesce(sum(octet_length(content)), 0) AS content_bytes,
       min(created_at) AS oldest_message_at,
       max(created_at) AS newest_message_at
FROM messages
WHERE tenant_id = :tenant_id{filters}
GROUP BY GROUPING SETS ((role), (kind), (embedding_status), ())
"""

BY_ROLE, BY_KIND, BY_STATUS, TOTAL = 3, 5, 6, 7


@dataclass(frozen=True)
class StatsRow:
    grouping: int
    role: str | None
    kind: str | None
    embedding_status: str | None
    messages: int
    archived: int
    conversations: int
    users: int
    content_bytes: int
    oldest_message_at: datetime | None
    newest_message_at: datetime | None


class StatsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def grouped_counts(
        self, tenant_id: str, *, user_id: str | None, conversation_id: str | None
    ) -> list[StatsRow]:
        filters = ""
        params: dict[str, object] = {"tenant_id": tenant_id}
        if user_id is not None:
            filters += " AND user_id = :user_id"
            params["user_id"] = user_id
        if conversation_id is not None:
            filters += " AND conversation_id = :conversation_id"
            params["conversation_id"] = conversation_id
        result = await self.session.execute(text(STATS_SQL.format(filters=filters)), params)
        return [
            StatsRow(
                grouping=int(row.grouping),
                role=row.role,
                kind=row.kind,
                embedding_status=row.embedding_status,
                messages=int(row.messages),
                archived=int(row.archived),
                conversations=int(row.conversations),
                users=int(row.users),
                content_bytes=int(row.content_bytes),
                oldest_message_at=row.oldest_message_at,
                newest_message_at=row.newest_message_at,
            )
            for row in result
        ]
