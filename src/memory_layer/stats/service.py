"""Stats: how much a tenant stores, and of which kind, computed in one SQL statement."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.stats.repository import StatsRepository


@dataclass(frozen=True)
class TenantStats:
    """Counts over every stored message in scope, archived ones included."""

    tenant_id: str
    user_id: str | None
    conversation_id: str | None
    messages: int
    archived: int
    by_role: dict[str, int]
    by_kind: dict[str, int]
    by_embedding_status: dict[str, int]
    conversations: int
    users: int
    content_bytes: int
    oldest_message_at: datetime | None
    newest_message_at: datetime | None


async def get_stats(
    session: AsyncSession,
    tenant_id: str,
    *,
    user_id: str | None = None,
    conversation_id: str | None = None,
    channel: str | None = None,
) -> TenantStats:
    """Counts of the tenant's messages, or of one user's, one conversation's or one channel's."""
    row = await StatsRepository(session).counts(
        tenant_id, user_id=user_id, conversation_id=conversation_id, channel=channel
    )
    return TenantStats(
        tenant_id=tenant_id,
        user_id=user_id,
        conversation_id=conversation_id,
        messages=row.messages,
        archived=row.archived,
        by_role=row.by_value["role"],
        by_kind=row.by_value["kind"],
        by_embedding_status=row.by_value["embedding_status"],
        conversations=row.conversations,
        users=row.users,
        content_bytes=row.content_bytes,
        oldest_message_at=row.oldest_message_at,
        newest_message_at=row.newest_message_at,
    )
