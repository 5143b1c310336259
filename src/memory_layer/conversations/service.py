"""Conversations: summaries of the tenant's conversations, their history, and deleting one.

A conversation is not a table of its own: it is the set of the tenant's messages that share a
conversation_id, so it exists while at least one of them is stored. Summaries count every stored
message, archived ones included (`archived_count` says how many are archived), because archived
messages still exist: they can be read by id, they are in the history with
`include_archived=true`, and deleting the conversation removes them. The history leaves them out
by default, as search does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.conversations.repository import ConversationRepository, ConversationSummary
from memory_layer.kit.cache import note_write
from memory_layer.kit.errors import NotFound
from memory_layer.kit.pagination import CursorCodec, Page, Scope, SortOrder, paginate
from memory_layer.models.message import Kind, Message, Role


class _Position(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConversationPosition(_Position):
    """Where a page of conversations ends, and the snapshot the listing is computed on."""

    last_message_at: AwareDatetime
    conversation_id: str
    as_of: AwareDatetime


class MessagePosition(_Position):
    """Where a page of a conversation's history ends."""

    created_at: AwareDatetime
    id: uuid.UUID


@dataclass(frozen=True)
class ConversationQuery:
    """Which conversations to list, and which page."""

    user_id: str | None = None
    since: datetime | None = None
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True)
class HistoryQuery:
    """Which messages of a conversation to list, in which order, and which page."""

    order: SortOrder = SortOrder.asc
    limit: int = 50
    cursor: str | None = None
    include_archived: bool = False
    role: Role | None = None
    kind: Kind | None = None


def _not_found(tenant_id: str, conversation_id: str) -> NotFound:
    return NotFound(
        f"no conversation {conversation_id!r} in tenant {tenant_id!r}",
        code="conversation_not_found",
    )


async def list_conversations(
    session: AsyncSession, tenant_id: str, query: ConversationQuery, *, cursors: CursorCodec
) -> Page[ConversationSummary]:
    """The tenant's conversations, most recently active first."""
    scope: Scope = {
        "tenant_id": tenant_id,
        "listing": "conversations",
        "user_id": query.user_id,
        "since": query.since.astimezone(UTC).isoformat() if query.since is not None else None,
    }
    position = (
        cursors.decode(query.cursor, scope, ConversationPosition) if query.cursor else None
    )
    fetched = await ConversationRepository(session).list_summaries(
        tenant_id,
        user_id=query.user_id,
        since=query.since,
        as_of=position.as_of if position else None,
        after=(position.last_message_at, position.conversation_id) if position else None,
        limit=query.limit + 1,
    )
    as_of = fetched.as_of

    def position_of(summary: ConversationSummary) -> ConversationPosition:
        assert as_of is not None  # a page with rows always has its snapshot time
        return ConversationPosition(
            last_message_at=summary.last_message_at,
            conversation_id=summary.conversation_id,
            as_of=as_of,
        )

    return paginate(
        fetched.rows, query.limit, codec=cursors, scope=scope, position_of=position_of
    )


async def get_conversation(
    session: AsyncSession, tenant_id: str, conversation_id: str
) -> ConversationSummary:
    """One conversation's summary, or 404 when the tenant stores no message of it."""
    summary = await ConversationRepository(session).get_summary(tenant_id, conversation_id)
    if summary is None:
        raise _not_found(tenant_id, conversation_id)
    return summary


async def list_conversation_messages(
    session: AsyncSession,
    tenant_id: str,
    conversation_id: str,
    query: HistoryQuery,
    *,
    cursors: CursorCodec,
) -> Page[Message]:
    """A page of a conversation's messages, oldest first (or newest first with desc).

    An unknown conversation is an empty history, not a 404: a client asking for the last turns
    of a conversation it is about to start needs no special case.
    """
    scope: Scope = {
        "tenant_id": tenant_id,
        "listing": "conversation_messages",
        "conversation_id": conversation_id,
        "order": query.order.value,
        "include_archived": query.include_archived,
        "role": query.role.value if query.role is not None else None,
        "kind": query.kind.value if query.kind is not None else None,
    }
    position = cursors.decode(query.cursor, scope, MessagePosition) if query.cursor else None
    rows = await ConversationRepository(session).list_messages(
        tenant_id,
        conversation_id,
        order=query.order,
        role=query.role.value if query.role is not None else None,
        kind=query.kind.value if query.kind is not None else None,
        include_archived=query.include_archived,
        after=(position.created_at, position.id) if position else None,
        limit=query.limit + 1,
    )
    return paginate(
        rows,
        query.limit,
        codec=cursors,
        scope=scope,
        position_of=lambda message: MessagePosition(created_at=message.created_at, id=message.id),
    )


async def delete_conversation(session: AsyncSession, tenant_id: str, conversation_id: str) -> int:
    """Hard delete of every message of the conversation; 404 when there was none."""
    deleted = await ConversationRepository(session).delete(tenant_id, conversation_id)
    if deleted == 0:
        raise _not_found(tenant_id, conversation_id)
    note_write(session, tenant_id)
    return deleted
