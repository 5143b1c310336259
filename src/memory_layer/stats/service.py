"""Stats: how much a tenant stores, and of which kind, computed in one SQL statement."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.models.message import EmbeddingStatus, Kind, Role
from memory_layer.stats.repository import BY_KIND, BY_ROLE, BY_STATUS, TOTAL, StatsRepository


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
) -> TenantStats:
    """Counts of the tenant's messages, or of one user's or one conversation's."""
    rows = await StatsRepository(session).grouped_counts(
        tenant_id, user_id=user_id, conversation_id=conversation_id
    )
    # Every known value is present, with 0 when nothing has it, so clients need no defaults.
    by_role = dict.fromkeys((role.value for role in Role), 0)
    by_kind = dict.fromkeys((kind.value for kind in Kind), 0)
    by_status = dict.fromkeys((status.value for status in EmbeddingStatus), 0)
    total = None
    for row in rows:
        if row.grouping == BY_ROLE and row.role is not None:
            by_role[row.role] = row.messages
        elif row.grouping == BY_KIND and row.kind is not None:
            by_kind[row.kind] = row.messages
        elif row.grouping == BY_STATUS and row.embedding_status is not None:
            by_status[row.embedding_status] = row.messages
        elif row.grouping == TOTAL:
            total = row
    return TenantStats(
        tenant_id=tenant_id,
        user_id=user_id,
        conversation_id=conversation_id,
        messages=total.messages if total else 0,
        archived=total.archived if total else 0,
        by_role=by_role,
        by_kind=by_kind,
        by_embedding_status=by_status,
        conversations=total.conversations if total else 0,
        users=total.users if total else 0,
        content_bytes=total.content_bytes if total else 0,
        oldest_message_at=total.oldest_message_at if total else None,
        newest_message_at=total.newest_message_at if total else None,
    )
