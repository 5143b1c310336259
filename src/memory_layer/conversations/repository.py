"""SQL of the conversations domain: summaries grouped from messages, history pages, deletion."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    and_,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.kit.pagination import Keyset, SortOrder
from memory_layer.models.conversation import Conversation
from memory_layer.models.conversation_state import ConversationState
from memory_layer.models.message import Message, unexpired


@dataclass(frozen=True)
class ConversationSummary:
    """A conversation as its stored messages (archived ones included) describe it."""

    conversation_id: str
    message_count: int
    archived_count: int
    first_message_at: datetime
    last_message_at: datetime
    user_id: str | None
    # The conversation's own metadata (PATCH /v1/conversations/{id}); empty when never set.
    title: str | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


_last_at = func.max(Message.created_at)


_described = and_(
    Conversation.tenant_id == Message.tenant_id,
    Conversation.conversation_id == Message.conversation_id,
)


def _summary_select(*extra: Any) -> Select[Any]:
    # One user when exactly one distinct non-null user_id appears (assistant turns often carry
    # none); count(DISTINCT) ignores NULLs. Grouping by the conversations row's primary key lets
    # its columns be selected as they are (none when the conversation was never described).
    single_user = case((func.count(Message.user_id.distinct()) == 1, func.min(Message.user_id)))
    return (
        select(
            Message.conversation_id,
            func.count().label("message_count"),
            func.count(Message.archived_at).label("archived_count"),
            func.min(Message.created_at).label("first_message_at"),
            _last_at.label("last_message_at"),
            single_user.label("user_id"),
            Conversation.title,
            Conversation.tags,
            Conversation.metadata_.label("metadata"),
            *extra,
        )
        .select_from(Message)
        .outerjoin(Conversation, _described)
        .group_by(Message.conversation_id, Conversation.tenant_id, Conversation.conversation_id)
    )


def _at(value: datetime) -> ColumnElement[datetime]:
    return literal(value, Message.created_at.type)


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


# Most recently active first; the key is an aggregate, so its predicate goes in HAVING.
SUMMARIES = Keyset(
    ConversationPosition,
    {"last_message_at": _last_at, "conversation_id": Message.conversation_id},
    order=SortOrder.desc,
    aggregate=True,
)
_HISTORY_KEY = {"created_at": Message.created_at, "id": Message.id}
HISTORY = {order: Keyset(MessagePosition, _HISTORY_KEY, order=order) for order in SortOrder}

_SUMMARY_FIELDS = [field.name for field in fields(ConversationSummary)]


def summary_of(row: Row[Any]) -> ConversationSummary:
    """The summary in a row of `summaries_listing` (or `get_summary`'s statement)."""
    # _summary_select names its columns as the fields; summaries_listing adds as_of.
    values = {name: row._mapping[name] for name in _SUMMARY_FIELDS}
    values["tags"] = values["tags"] or []
    values["metadata"] = values["metadata"] or {}
    return ConversationSummary(**values)


# The metadata row's attributes that PATCH sets, and their columns.
_COLUMN_OF = {"title": "title", "tags": "tags", "metadata_": "metadata"}


class ConversationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def summaries_listing(
        self,
        tenant_id: str,
        *,
        user_id: str | None,
        since: datetime | None,
        as_of: datetime | None,
        until: datetime | None = None,
        tag: str | None = None,
    ) -> Select[Any]:
        """Summaries computed over messages created up to `as_of` (now() when None, the first
        time; each row carries it as `as_of`), to page in SUMMARIES order.

        Pinning `as_of` keeps every later page computed on the same snapshot: a conversation
        that gets a new message while a client pages does not jump to the top of the order, past
        the cursor, and so is neither skipped nor shown twice.
        """
        snapshot: ColumnElement[datetime] = func.now() if as_of is None else _at(as_of)
        in_snapshot = and_(
            Message.tenant_id == tenant_id, Message.created_at <= snapshot, unexpired()
        )
        statement = _summary_select(snapshot.label("as_of")).where(in_snapshot)
        if user_id is not None:
            # The user's conversations, summarised whole (every participant's messages).
            statement = statement.where(
                Message.conversation_id.in_(
                    select(Message.conversation_id).where(in_snapshot, Message.user_id == user_id)
                )
            )
        if since is not None:
            # Active since `since` = has a message since then: the (tenant_id, created_at) index
            # finds those conversations, and only they are grouped. Measured on 100,000 messages
            # in 5,000 conversations: 14 ms instead of 80 ms when 300 conversations qualify,
            # 120 ms instead of 80 ms when 3,600 do; "active lately" is the selective case.
            statement = statement.where(
                Message.conversation_id.in_(
                    select(Message.conversation_id).where(in_snapshot, Message.created_at >= since)
                )
            )
        if until is not None:
            statement = statement.having(_last_at <= _at(until))
        if tag is not None:
            statement = statement.where(
                Message.conversation_id.in_(
                    select(Conversation.conversation_id).where(
                        Conversation.tenant_id == tenant_id, Conversation.tags.contains([tag])
                    )
                )
            )
        return statement

    async def get_summary(self, tenant_id: str, conversation_id: str) -> ConversationSummary | None:
        statement = _summary_select().where(
            Message.tenant_id == tenant_id, Message.conversation_id == conversation_id, unexpired()
        )
        row = (await self.session.execute(statement)).one_or_none()
        return None if row is None else summary_of(row)

    def history_listing(
        self,
        tenant_id: str,
        conversation_id: str,
        *,
        role: str | None,
        kind: str | None,
        include_archived: bool,
        pii_kind: str | None = None,
        include_superseded: bool = False,
        channel: str | None = None,
    ) -> Select[Message]:
        """A conversation's messages, to page in HISTORY order (the index on (tenant_id,
        conversation_id, created_at) serves both directions)."""
        statement = select(Message).where(
            Message.tenant_id == tenant_id, Message.conversation_id == conversation_id, unexpired()
        )
        if pii_kind is not None:
            statement = statement.where(Message.pii_kinds.contains([pii_kind]))
        if channel is not None:
            statement = statement.where(Message.channel == channel)
        if not include_archived:
            statement = statement.where(Message.archived_at.is_(None))
        if not include_superseded:
            statement = statement.where(Message.superseded_by.is_(None))
        if role is not None:
            statement = statement.where(Message.role == role)
        if kind is not None:
            statement = statement.where(Message.kind == kind)
        return statement

    async def get_description(self, tenant_id: str, conversation_id: str) -> Conversation | None:
        result = await self.session.execute(
            select(Conversation).where(
                Conversation.tenant_id == tenant_id, Conversation.conversation_id == conversation_id
            )
        )
        return result.scalar_one_or_none()

    async def describe(
        self, tenant_id: str, conversation_id: str, values: dict[str, Any]
    ) -> Conversation:
        """Create the conversation's metadata row with `values` (title, tags, metadata_), or set
        them on the existing one; the others stay."""
        inserted = pg_insert(Conversation).values(
            tenant_id=tenant_id, conversation_id=conversation_id, **values
        )
        statement = inserted.on_conflict_do_update(
            index_elements=[Conversation.tenant_id, Conversation.conversation_id],
            set_={
                **{_COLUMN_OF[name]: inserted.excluded[_COLUMN_OF[name]] for name in values},
                "updated_at": func.now(),
            },
        ).returning(Conversation)
        result = await self.session.execute(statement.execution_options(populate_existing=True))
        return result.scalar_one()

    async def delete_description(self, tenant_id: str, conversation_id: str) -> int:
        result = await self.session.execute(
            delete(Conversation).where(
                Conversation.tenant_id == tenant_id, Conversation.conversation_id == conversation_id
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def delete_descriptions_of_user(self, tenant_id: str, user_id: str) -> int:
        """The metadata of every conversation in which a message carries the user's id (run
        before those messages go)."""
        named_in = select(Message.conversation_id).where(
            Message.tenant_id == tenant_id, Message.user_id == user_id
        )
        result = await self.session.execute(
            delete(Conversation).where(
                Conversation.tenant_id == tenant_id, Conversation.conversation_id.in_(named_in)
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def delete(self, tenant_id: str, conversation_id: str) -> int:
        """Hard delete of every message of the conversation (archived ones too)."""
        result = await self.session.execute(
            delete(Message).where(
                Message.tenant_id == tenant_id, Message.conversation_id == conversation_id
            )
        )
        await self.session.flush()
        return int(result.rowcount)  # type: ignore[attr-defined]


def _state_expired() -> ColumnElement[bool]:
    return and_(ConversationState.expires_at.is_not(None), ConversationState.expires_at <= func.now())


def _state_live() -> ColumnElement[bool]:
    return or_(ConversationState.expires_at.is_(None), ConversationState.expires_at > func.now())


def _expiry(ttl_seconds: int | None) -> ColumnElement[datetime] | None:
    if ttl_seconds is None:
        return None
    return func.now() + literal(timedelta(seconds=ttl_seconds))


class ConversationStateRepository:
    """Working-memory documents. Expired rows are invisible to every read; retention deletes them."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _one(self, tenant_id: str, conversation_id: str) -> ColumnElement[bool]:
        return and_(
            ConversationState.tenant_id == tenant_id,
            ConversationState.conversation_id == conversation_id,
        )

    async def get(
        self, tenant_id: str, conversation_id: str, *, for_update: bool = False
    ) -> ConversationState | None:
        """The live state, locked until the transaction ends with `for_update` (the row a
        conditional write compares and changes)."""
        statement = select(ConversationState).where(
            self._one(tenant_id, conversation_id), _state_live()
        )
        if for_update:
            statement = statement.with_for_update()
        result = await self.session.execute(statement.execution_options(populate_existing=True))
        return result.scalar_one_or_none()

    async def upsert(
        self,
        tenant_id: str,
        conversation_id: str,
        document: dict[str, Any],
        *,
        user_id: str | None,
        ttl_seconds: int | None,
        only_if_absent: bool,
    ) -> ConversationState | None:
        """Create the state, or replace it (a new version); an expired one counts as absent (it
        starts again at version 1). With `only_if_absent`, a live state is left alone: None."""
        inserted = pg_insert(ConversationState).values(
            tenant_id=tenant_id,
            conversation_id=conversation_id,
            user_id=user_id,
            document=document,
            version=1,
            expires_at=_expiry(ttl_seconds),
        )
        current = ConversationState.__table__.c
        expired = _state_expired()
        statement = inserted.on_conflict_do_update(
            index_elements=[current.tenant_id, current.conversation_id],
            set_={
                "document": inserted.excluded.document,
                "user_id": case(
                    (expired, inserted.excluded.user_id),
                    else_=func.coalesce(inserted.excluded.user_id, current.user_id),
                ),
                "version": case((expired, 1), else_=current.version + 1),
                "created_at": case((expired, func.now()), else_=current.created_at),
                "updated_at": func.now(),
                "expires_at": inserted.excluded.expires_at,
            },
            where=expired if only_if_absent else None,
        ).returning(ConversationState)
        result = await self.session.execute(
            statement.execution_options(populate_existing=True)
        )
        return result.scalar_one_or_none()

    async def replace(
        self,
        tenant_id: str,
        conversation_id: str,
        document: dict[str, Any],
        *,
        user_id: str | None,
        ttl_seconds: int | None,
        keep_expiry: bool,
    ) -> ConversationState:
        """A new version of a live state the transaction holds locked (see `get`)."""
        values: dict[str, Any] = {
            "document": document,
            "version": ConversationState.version + 1,
            "updated_at": func.now(),
        }
        if user_id is not None:
            values["user_id"] = user_id
        if not keep_expiry or ttl_seconds is not None:
            values["expires_at"] = _expiry(ttl_seconds)
        result = await self.session.execute(
            update(ConversationState)
            .where(self._one(tenant_id, conversation_id))
            .values(**values)
            .returning(ConversationState)
            .execution_options(populate_existing=True)
        )
        return result.scalar_one()

    async def delete(self, tenant_id: str, conversation_id: str) -> int:
        result = await self.session.execute(
            delete(ConversationState).where(self._one(tenant_id, conversation_id))
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def delete_of_user(self, tenant_id: str, user_id: str) -> int:
        """The states of a user's conversations: those written for the user, and those of every
        conversation in which a message carries the user's id (run before those messages go)."""
        named_in = select(Message.conversation_id).where(
            Message.tenant_id == tenant_id, Message.user_id == user_id
        )
        result = await self.session.execute(
            delete(ConversationState).where(
                ConversationState.tenant_id == tenant_id,
                or_(
                    ConversationState.user_id == user_id,
                    ConversationState.conversation_id.in_(named_in),
                ),
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def delete_expired(self, tenant_id: str | None) -> int:
        statement = delete(ConversationState).where(_state_expired())
        if tenant_id is not None:
            statement = statement.where(ConversationState.tenant_id == tenant_id)
        result = await self.session.execute(statement)
        return int(result.rowcount)  # type: ignore[attr-defined]
