"""Conversations: summaries of the tenant's conversations, their history, and deleting one.

A conversation is not a table of its own: it is the set of the tenant's messages that share a
conversation_id, so it exists while at least one of them is stored. Summaries count every stored
message, archived ones included (`archived_count` says how many are archived), because archived
messages still exist: they can be read by id, they are in the history with
`include_archived=true`, and deleting the conversation removes them. The history leaves them out
by default, as search does.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import json_merge_patch
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.audit import service as audit
from memory_layer.conversations.repository import (
    HISTORY,
    SUMMARIES,
    ConversationRepository,
    ConversationStateRepository,
    ConversationSummary,
    summary_of,
)
from memory_layer.events import service as events
from memory_layer.kit.cache import note_write
from memory_layer.kit.errors import DomainError, InvalidInput, NotFound, PreconditionFailed
from memory_layer.kit.pagination import (
    CursorCodec,
    Page,
    PageRequest,
    Scope,
    ScopeValue,
    SortOrder,
    paginate,
)
from memory_layer.models.audit import AuditAction
from memory_layer.models.conversation import Conversation
from memory_layer.models.conversation_state import ConversationState
from memory_layer.models.message import Kind, Message, Role
from memory_layer.models.policy import PiiKind
from memory_layer.policies.service import QuotaExceeded


@dataclass(frozen=True)
class ConversationQuery:
    """Which conversations to list, and which page."""

    user_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    tag: str | None = None
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True)
class HistoryQuery:
    """Which messages of a conversation to list, in which order, and which page."""

    order: SortOrder = SortOrder.asc
    limit: int = 50
    cursor: str | None = None
    include_archived: bool = False
    include_superseded: bool = False
    role: Role | None = None
    kind: Kind | None = None
    pii_kind: PiiKind | None = None
    channel: str | None = None


def _not_found(tenant_id: str, conversation_id: str) -> NotFound:
    return NotFound(
        f"no conversation {conversation_id!r} in tenant {tenant_id!r}",
        code="conversation_not_found",
    )


async def list_conversations(
    session: AsyncSession, tenant_id: str, query: ConversationQuery, *, cursors: CursorCodec
) -> Page[ConversationSummary]:
    """The tenant's conversations, most recently active first."""
    scope: dict[str, ScopeValue] = {
        "tenant_id": tenant_id,
        "listing": "conversations",
        "user_id": query.user_id,
        "since": query.since.astimezone(UTC).isoformat() if query.since is not None else None,
    }
    # Added only when used, so cursors of listings without them keep their scope.
    if query.until is not None:
        scope["until"] = query.until.astimezone(UTC).isoformat()
    if query.tag is not None:
        scope["tag"] = query.tag
    repository = ConversationRepository(session)
    page = await paginate(
        session,
        lambda position: repository.summaries_listing(
            tenant_id,
            user_id=query.user_id,
            since=query.since,
            as_of=position.as_of if position is not None else None,
            until=query.until,
            tag=query.tag,
        ),
        pagination=PageRequest(query.limit, query.cursor),
        keyset=SUMMARIES,
        codec=cursors,
        scope=scope,
    )
    return page.map(summary_of)


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
        "include_superseded": query.include_superseded,
        "role": query.role.value if query.role is not None else None,
        "kind": query.kind.value if query.kind is not None else None,
        "pii_kind": query.pii_kind.value if query.pii_kind is not None else None,
        "channel": query.channel,
    }
    return await paginate(
        session,
        ConversationRepository(session).history_listing(
            tenant_id,
            conversation_id,
            role=query.role.value if query.role is not None else None,
            kind=query.kind.value if query.kind is not None else None,
            include_archived=query.include_archived,
            include_superseded=query.include_superseded,
            pii_kind=query.pii_kind.value if query.pii_kind is not None else None,
            channel=query.channel,
        ),
        pagination=PageRequest(query.limit, query.cursor),
        keyset=HISTORY[query.order],
        codec=cursors,
        scope=scope,
    )


@dataclass(frozen=True)
class Description:
    """What to set on a conversation's own metadata; a field left None stays as it is, except
    `title` when `clear_title` (PATCH with `"title": null`)."""

    title: str | None = None
    clear_title: bool = False
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None


async def describe_conversation(
    session: AsyncSession,
    tenant_id: str,
    conversation_id: str,
    change: Description,
    *,
    max_metadata_bytes: int,
) -> Conversation:
    """Set the conversation's title, tags or metadata (created on first use, even before its
    first message); the stored description."""
    values: dict[str, Any] = {}
    if change.title is not None or change.clear_title:
        values["title"] = change.title
    if change.tags is not None:
        values["tags"] = list(dict.fromkeys(change.tags))  # each tag once, in the order given
    if change.metadata is not None:
        size = len(json.dumps(change.metadata, ensure_ascii=False, separators=(",", ":")).encode())
        if size > max_metadata_bytes:
            raise InvalidInput(
                f"metadata is {size} bytes as JSON; the limit is {max_metadata_bytes} "
                "(MEMORY_MAX_METADATA_BYTES)",
                code="metadata_too_large",
            )
        values["metadata_"] = change.metadata
    repository = ConversationRepository(session)
    if not values:
        raise InvalidInput("nothing to change: send title, tags or metadata", code="invalid_input")
    return await repository.describe(tenant_id, conversation_id, values)


async def delete_conversation(
    session: AsyncSession, tenant_id: str, conversation_id: str, *, actor: audit.Actor
) -> int:
    """Hard delete of every message of the conversation, its events, its state and its metadata;
    404 when there was no message and no event. Audited (`conversation.deleted`)."""
    repository = ConversationRepository(session)
    deleted = await repository.delete(tenant_id, conversation_id)
    event_count = await events.delete_conversation_events(session, tenant_id, conversation_id)
    if deleted == 0 and event_count == 0:
        raise _not_found(tenant_id, conversation_id)
    await repository.delete_description(tenant_id, conversation_id)
    states = await ConversationStateRepository(session).delete(tenant_id, conversation_id)
    await audit.record(
        session,
        AuditAction.conversation_deleted,
        actor=actor,
        tenant_id=tenant_id,
        target=f"conversation:{conversation_id}",
        counts={"messages": deleted, "conversation_states": states, "events": event_count},
    )
    note_write(session, tenant_id)
    return deleted


# Working memory: one JSON document per conversation, changed under optimistic concurrency.
#
# The ETag names the version and the state's creation time, so a state deleted (or expired) and
# created again never answers to an ETag of its predecessor with the same version number.
# Conditional writes lock the row (SELECT ... FOR UPDATE) before comparing: two writers holding
# the same ETag are serialised, the second sees the new version and gets 412.


class StateTooLarge(DomainError):
    status_code = 413
    code = "state_too_large"


def state_etag(state: ConversationState) -> str:
    """The state's strong ETag: its version and creation time."""
    created = (state.created_at - _EPOCH) // timedelta(microseconds=1)
    return f'"{state.version}-{created:x}"'


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _tags(header: str) -> set[str]:
    # Weak tags (W/"...") never match a strong comparison (RFC 9110 13.1.1): dropped.
    return {tag for tag in (part.strip() for part in header.split(",")) if tag.startswith('"')}


@dataclass(frozen=True)
class Preconditions:
    """The request's If-Match and If-None-Match headers, unparsed (None when absent)."""

    if_match: str | None = None
    if_none_match: str | None = None

    def check(self, current: ConversationState | None) -> None:
        """412 unless the live state (None: there is none) satisfies both headers."""
        if self.if_match is not None:
            if current is None:
                raise PreconditionFailed("If-Match: the conversation has no state")
            if self.if_match.strip() != "*" and state_etag(current) not in _tags(self.if_match):
                raise PreconditionFailed(
                    f"If-Match: the state is now at {state_etag(current)}; read it again"
                )
        if self.if_none_match is not None and current is not None:
            none_match = self.if_none_match.strip()
            if none_match == "*" or state_etag(current) in _tags(none_match):
                raise PreconditionFailed(
                    f"If-None-Match: the conversation already has a state ({state_etag(current)})"
                )


def _checked_document(
    document: object, max_bytes: int, tenant_id: str, quota_bytes: int
) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise InvalidInput("the state must be a JSON object", code="invalid_state")
    encoded = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    if "\\u0000" in encoded:
        raise InvalidInput("the state must not contain NUL (\\u0000) characters", code="invalid_state")
    size = len(encoded.encode())
    if size > max_bytes:
        raise StateTooLarge(
            {"message": f"the state takes {size} bytes; the limit is {max_bytes}",
             "size_bytes": size, "limit_bytes": max_bytes}
        )
    if quota_bytes and size > quota_bytes:
        # The tenant's policy caps each state document below the service's own limit.
        raise QuotaExceeded(tenant_id, "conversation_state_bytes", quota_bytes, 0, size)
    return document


def _state_not_found(tenant_id: str, conversation_id: str) -> NotFound:
    return NotFound(
        f"conversation {conversation_id!r} of tenant {tenant_id!r} has no state",
        code="state_not_found",
    )


async def get_state(session: AsyncSession, tenant_id: str, conversation_id: str) -> ConversationState:
    """The conversation's live state, or 404 `state_not_found` (never written, deleted or expired)."""
    state = await ConversationStateRepository(session).get(tenant_id, conversation_id)
    if state is None:
        raise _state_not_found(tenant_id, conversation_id)
    return state


@dataclass(frozen=True)
class StateWrite:
    """A full document to store, its lifetime (None: no expiry) and, optionally, its user."""

    document: dict[str, Any]
    ttl_seconds: int | None = None
    user_id: str | None = None


async def put_state(
    session: AsyncSession,
    tenant_id: str,
    conversation_id: str,
    write: StateWrite,
    *,
    preconditions: Preconditions,
    max_bytes: int,
    quota_bytes: int = 0,
) -> tuple[ConversationState, bool]:
    """Create or replace the state; the state and whether it was created. 412 when a
    precondition fails (nothing changes), 413 when the document exceeds `max_bytes`, 409
    `quota_exceeded` when it exceeds the tenant's state quota (`quota_bytes`, 0: none)."""
    document = _checked_document(write.document, max_bytes, tenant_id, quota_bytes)
    repository = ConversationStateRepository(session)
    none_match = preconditions.if_none_match
    only_if_absent = none_match is not None and none_match.strip() == "*"
    if preconditions.if_match is None and (none_match is None or only_if_absent):
        # No version to compare: one upsert, atomic against a concurrent creation.
        state = await repository.upsert(
            tenant_id,
            conversation_id,
            document,
            user_id=write.user_id,
            ttl_seconds=write.ttl_seconds,
            only_if_absent=only_if_absent,
        )
        if state is None:
            raise PreconditionFailed("If-None-Match: *: the conversation already has a state")
        return state, state.version == 1
    current = await repository.get(tenant_id, conversation_id, for_update=True)
    preconditions.check(current)
    if current is None:  # If-None-Match naming ETags, and no state: create it
        state = await repository.upsert(
            tenant_id,
            conversation_id,
            document,
            user_id=write.user_id,
            ttl_seconds=write.ttl_seconds,
            only_if_absent=False,
        )
        assert state is not None  # an unconditional upsert always answers a row
        return state, state.version == 1
    state = await repository.replace(
        tenant_id,
        conversation_id,
        document,
        user_id=write.user_id,
        ttl_seconds=write.ttl_seconds,
        keep_expiry=False,
    )
    return state, False


async def patch_state(
    session: AsyncSession,
    tenant_id: str,
    conversation_id: str,
    patch: object,
    *,
    ttl_seconds: int | None,
    preconditions: Preconditions,
    max_bytes: int,
    quota_bytes: int = 0,
) -> ConversationState:
    """Apply a JSON merge patch (RFC 7396) to the live state: a new version. 404 without a
    state, 412 when a precondition fails, 413 when the result exceeds `max_bytes`, 409 when it
    exceeds the tenant's state quota; `ttl_seconds` renews the expiry, kept otherwise. A patch
    that is not an object (which would replace the whole state by it) is 422 before anything is
    read."""
    if not isinstance(patch, dict):
        raise InvalidInput(
            "the merge patch must be a JSON object (the state is one)", code="invalid_state"
        )
    repository = ConversationStateRepository(session)
    current = await repository.get(tenant_id, conversation_id, for_update=True)
    preconditions.check(current)
    if current is None:
        raise _state_not_found(tenant_id, conversation_id)
    merged = json_merge_patch.merge(copy.deepcopy(current.document), patch)
    document = _checked_document(merged, max_bytes, tenant_id, quota_bytes)
    return await repository.replace(
        tenant_id,
        conversation_id,
        document,
        user_id=None,
        ttl_seconds=ttl_seconds,
        keep_expiry=True,
    )


async def delete_state(
    session: AsyncSession,
    tenant_id: str,
    conversation_id: str,
    *,
    preconditions: Preconditions,
    actor: audit.Actor,
) -> None:
    """Delete the live state (audited); 404 without one, 412 when a precondition fails."""
    repository = ConversationStateRepository(session)
    current = await repository.get(tenant_id, conversation_id, for_update=True)
    preconditions.check(current)
    if current is None:
        raise _state_not_found(tenant_id, conversation_id)
    await repository.delete(tenant_id, conversation_id)
    await audit.record(
        session,
        AuditAction.conversation_state_deleted,
        actor=actor,
        tenant_id=tenant_id,
        target=f"conversation:{conversation_id}",
    )


async def delete_user_descriptions(session: AsyncSession, tenant_id: str, user_id: str) -> int:
    """Delete the metadata (title, tags) of the user's conversations, for an erasure: call it
    before the user's messages are deleted, as it finds conversations through them."""
    return await ConversationRepository(session).delete_descriptions_of_user(tenant_id, user_id)


async def delete_user_states(session: AsyncSession, tenant_id: str, user_id: str) -> int:
    """Delete the states of the user's conversations (for an erasure: call it before the user's
    messages are deleted, as it finds conversations through them)."""
    return await ConversationStateRepository(session).delete_of_user(tenant_id, user_id)


async def delete_expired_states(session: AsyncSession, tenant_id: str | None) -> int:
    """Free the rows of expired states (already invisible to readers); how many."""
    return await ConversationStateRepository(session).delete_expired(tenant_id)
