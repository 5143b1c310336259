"""Event streams: append-only JSON events per conversation, numbered per stream (`seq`).

An event's optional `description` is also stored as a message of kind `event` (same
conversation, user and expiry; metadata `event_type` and `event_seq`), so the embedding queue,
search, erasure, retention and export treat it like any memory; the event row keeps the link
(`message_id`). Deleting events (with the conversation, an erasure, retention, expiry) deletes
those messages in the same statement.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from memory_layer.config import Settings
from memory_layer.embeddings.providers.base import EmbeddingProvider
from memory_layer.events.repository import NEWEST_FIRST, OLDEST_FIRST, EventRepository
from memory_layer.kit.cache import note_write
from memory_layer.kit.db.wakeups import Wakeups
from memory_layer.kit.errors import InvalidInput, PayloadTooLarge
from memory_layer.kit.observability.metrics import Metrics
from memory_layer.kit.pagination import CursorCodec, Page, PageRequest, Scope, SortOrder, paginate
from memory_layer.messages import service as messages
from memory_layer.models.event import ConversationEvent
from memory_layer.models.message import Kind, Role
from memory_layer.policies.service import EffectivePolicy


@dataclass(frozen=True)
class NewEvent:
    type: str
    data: Any
    description: str | None = None
    user_id: str | None = None
    ttl_seconds: int | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True)
class EventQuery:
    after: int | None = None
    types: Sequence[str] | None = None
    order: SortOrder = SortOrder.asc
    limit: int = 100
    cursor: str | None = None
    wait_seconds: float = 0.0


def wakeup_key(tenant_id: str, conversation_id: str) -> str:
    """The NOTIFY payload an append to this stream sends."""
    return f"events\x1f{tenant_id}\x1f{conversation_id}"


def _checked_data(data: Any, max_bytes: int) -> None:
    encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if "\\u0000" in encoded:
        raise InvalidInput("data must not contain NUL (\\u0000) characters", code="invalid_data")
    size = len(encoded.encode())
    if size > max_bytes:
        raise PayloadTooLarge(
            f"data takes {size} bytes as JSON; the limit is {max_bytes} (MEMORY_MAX_STATE_BYTES)"
        )


def _expiry(event: NewEvent, policy: EffectivePolicy) -> datetime | None:
    """The client's expires_at or ttl_seconds, else the tenant's default TTL (as messages)."""
    if event.expires_at is not None:
        if event.expires_at <= datetime.now(UTC):
            raise InvalidInput("expires_at lies in the past", code="invalid_expires_at")
        return event.expires_at
    ttl = event.ttl_seconds if event.ttl_seconds is not None else policy.default_ttl_seconds
    return datetime.now(UTC) + timedelta(seconds=ttl) if ttl else None


async def append_event(
    session: AsyncSession,
    tenant_id: str,
    conversation_id: str,
    event: NewEvent,
    *,
    settings: Settings,
    embedder: EmbeddingProvider,
    metrics: Metrics,
    policy: EffectivePolicy,
    request_id: str | None = None,
) -> ConversationEvent:
    """Append an event to the conversation's stream; its `seq` is the stream's next number.

    A description is stored first as a message of kind `event` (embedded inline or queued, PII
    rules and quotas applied, before the stream's row is locked), then the event is numbered and
    inserted; long-polling readers are woken at commit.
    """
    _checked_data(event.data, settings.max_state_bytes)
    expires_at = _expiry(event, policy)
    message_id = None
    description = event.description
    if description is not None:
        result = await messages.ingest_message(
            session,
            tenant_id,
            messages.NewMessage(
                conversation_id=conversation_id,
                role=Role.system,
                content=description,
                kind=Kind.event,
                user_id=event.user_id,
                metadata={"event_type": event.type},
                expires_at=expires_at,
            ),
            settings=settings,
            embedder=embedder,
            metrics=metrics,
            policy=policy,
            request_id=request_id,
        )
        message_id = result.message.id
        # What the tenant's PII mode let be stored (redacted), here as in the message.
        description = result.message.content
    repository = EventRepository(session)
    seq = await repository.next_seq(tenant_id, conversation_id)
    stored = await repository.insert(
        {
            "tenant_id": tenant_id,
            "conversation_id": conversation_id,
            "seq": seq,
            "type": event.type,
            "data": event.data,
            "description": description,
            "message_id": message_id,
            "user_id": event.user_id,
            "expires_at": expires_at,
        }
    )
    if message_id is not None:
        await repository.link_message(tenant_id, message_id, seq)
    await repository.notify(wakeup_key(tenant_id, conversation_id))
    return stored


async def read_events(
    sessionmaker: async_sessionmaker[AsyncSession],
    wakeups: Wakeups,
    tenant_id: str,
    conversation_id: str,
    query: EventQuery,
    *,
    cursors: CursorCodec,
) -> Page[ConversationEvent]:
    """A page of the stream's events after `after`, of the types asked, in `order`; with
    `wait_seconds`, an empty first answer waits (no polling) for the next append."""
    scope: Scope = {
        "listing": "events",
        "tenant_id": tenant_id,
        "conversation_id": conversation_id,
        "order": query.order.value,
        "after": query.after,
        "types": ",".join(sorted(query.types)) if query.types else None,
    }
    statement = EventRepository.listing(
        tenant_id, conversation_id, after=query.after, types=query.types
    )
    keyset = OLDEST_FIRST if query.order is SortOrder.asc else NEWEST_FIRST
    loop = asyncio.get_running_loop()
    deadline = loop.time() + query.wait_seconds
    # Registered before the first read: an append committed between a read and the sleep wakes.
    with wakeups.waiter(wakeup_key(tenant_id, conversation_id)) as woken:
        while True:
            # A short session per read: no connection is held while the request waits.
            async with sessionmaker() as session:
                page: Page[ConversationEvent] = await paginate(
                    session,
                    statement,
                    pagination=PageRequest(query.limit, query.cursor),
                    keyset=keyset,
                    codec=cursors,
                    scope=scope,
                )
            remaining = deadline - loop.time()
            if page.items or query.cursor is not None or remaining <= 0:
                return page
            await wakeups.sleep(woken, remaining)


async def delete_conversation_events(
    session: AsyncSession, tenant_id: str, conversation_id: str
) -> int:
    """Delete the conversation's events and stream (with the conversation); how many events."""
    return await EventRepository(session).delete_conversation(tenant_id, conversation_id)


async def delete_user_events(
    session: AsyncSession, tenant_id: str, user_id: str, *, include_unattributed: bool
) -> int:
    """Delete the user's events (and, optionally, the unnamed ones of the conversations only
    they are named in) with their description messages, for an erasure: call it before the
    user's messages go, as it finds those conversations through them; how many events."""
    events, described = await EventRepository(session).delete_of_user(
        tenant_id, user_id, include_unattributed=include_unattributed
    )
    if described:
        note_write(session, tenant_id)
    return events


async def delete_expired_events(session: AsyncSession, tenants: Sequence[str] | None) -> int:
    """Free the rows of expired events (already invisible) and their messages; how many events."""
    events, described = await EventRepository(session).delete_expired(tenants)
    if described:
        for tenant_id in tenants if tenants is not None else [None]:
            note_write(session, tenant_id)
    return events


async def delete_events_older_than(
    session: AsyncSession,
    tenants: Sequence[str] | None,
    exclude: Sequence[str],
    cutoff: datetime,
) -> int:
    """Retention by age: events created before `cutoff` (of the tenants in scope) and their
    messages; how many events."""
    events, described = await EventRepository(session).delete_older_than(tenants, exclude, cutoff)
    if described:
        for tenant_id in tenants if tenants is not None else [None]:
            note_write(session, tenant_id)
    return events


async def count_events(session: AsyncSession) -> int:
    """Events stored across the store (unexpired), for the admin statistics."""
    return await EventRepository(session).count()
