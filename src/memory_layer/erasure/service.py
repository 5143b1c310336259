"""Erasure of one person (GDPR art. 17): their messages go, a content-free record stays.

Everything happens in one transaction of its own: the messages are deleted and the `erasures`
record is written together, or neither is. The record holds who asked (the API key's label,
never a secret), when, and how many rows went; never any content. Erasing again is harmless: it
deletes what may have arrived since (zero rows otherwise) and is recorded again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from memory_layer.audit import service as audit
from memory_layer.conversations import service as conversations
from memory_layer.erasure.repository import NEWEST_FIRST, ErasureRepository
from memory_layer.events import service as events
from memory_layer.kit.cache import TenantSizes, note_write, publish_writes
from memory_layer.kit.pagination import CursorCodec, Page, PageRequest, Scope, paginate
from memory_layer.models.erasure import Erasure


async def erase_user(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant_id: str,
    user_id: str,
    *,
    actor: audit.Actor,
    include_unattributed: bool = True,
    tenant_sizes: TenantSizes | None = None,
) -> Erasure:
    """Delete every message and event of the user in the tenant, and the states and descriptions
    (title, tags) of their conversations, and record the erasure (in `erasures` and the audit log), in
    one transaction; the record."""
    async with sessionmaker.begin() as session:
        repository = ErasureRepository(session)
        # First: the conversations are found through the messages about to go.
        states = await conversations.delete_user_states(session, tenant_id, user_id)
        described = await conversations.delete_user_descriptions(session, tenant_id, user_id)
        event_count = await events.delete_user_events(
            session, tenant_id, user_id, include_unattributed=include_unattributed
        )
        erased = await repository.delete_user_messages(
            tenant_id, user_id, include_unattributed=include_unattributed
        )
        counts: dict[str, Any] = {
            "messages": erased.user_messages + erased.unattributed_messages,
            "user_messages": erased.user_messages,
            "unattributed_messages": erased.unattributed_messages,
            "conversations": erased.conversations,
            "conversation_states": states,
            "conversation_descriptions": described,
            "events": event_count,
        }
        # Sessions do not expire objects on commit: the record stays readable after it.
        record = await repository.record(tenant_id, user_id, actor.label, counts)
        await audit.record(
            session,
            audit.AuditAction.user_erased,
            actor=actor,
            tenant_id=tenant_id,
            target=f"user:{user_id}",
            counts=counts,
        )
        note_write(session, tenant_id)
    await publish_writes(session)
    # After the commit: a search that refilled the size cache meanwhile counted the rows that
    # were still there; dropping it now makes the next search count again.
    if tenant_sizes is not None:
        tenant_sizes.pop(tenant_id, None)
    return record


async def list_erasures(
    session: AsyncSession,
    *,
    tenant_id: str | None,
    user_id: str | None,
    limit: int,
    cursor: str | None,
    cursors: CursorCodec,
) -> Page[Erasure]:
    """Erasure records, newest first, optionally of one tenant and one user."""
    scope: Scope = {"listing": "erasures", "tenant_id": tenant_id, "user_id": user_id}
    return await paginate(
        session,
        ErasureRepository(session).listing(tenant_id=tenant_id, user_id=user_id),
        pagination=PageRequest(limit, cursor),
        keyset=NEWEST_FIRST,
        codec=cursors,
        scope=scope,
    )
