"""SQL of the conversations domain: summaries grouped from messages, history pages, deletion."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

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
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.kit.pagination import SortOrder
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


@dataclass(frozen=True)
class SummaryPageRows:
    rows: list[ConversationSummary]
    # The snapshot the page was computed on (the database's clock on the first page); None for
    # an empty first page, which needs no cursor.
    as_of: datetime | None


_last_at = func.max(Message.created_at)


def _summary_select(*extra: Any) -> Select[Any]:
    # One user when exactly one distinct non-null user_id appears (assistant turns often carry
    # none); count(DISTINCT) ignores NULLs.
    single_user = case((func.count(Message.user_id.distinct()) == 1, func.min(Message.user_id)))
    return select(
        Message.conversation_id,
        func.count().label("message_count"),
        func.count(Message.archived_at).label("archived_count"),
        func.min(Message.created_at).label("first_message_at"),
        _last_at.label("last_message_at"),
        single_user.label("user_id"),
        *extra,
    ).group_by(Message.conversation_id)


def _at(value: datetime) -> ColumnElement[datetime]:
    return literal(value, Message.created_at.type)


_SUMMARY_FIELDS = [field.name for field in fields(ConversationSummary)]


def _summary(row: Row[Any]) -> ConversationSummary:
    # _summary_select names its columns as the fields; list_summaries adds as_of.
    return ConversationSummary(**{name: row._mapping[name] for name in _SUMMARY_FIELDS})


class ConversationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list_summaries(
        self,
        tenant_id: str,
        *,
        user_id: str | None,
        since: datetime | None,
        as_of: datetime | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> SummaryPageRows:
        """Most recently active first, `limit` rows, computed over messages created up to `as_of`.

        Pinning `as_of` (now(), the first time) keeps every later page computed on the same
        snapshot: a conversation that gets a new message while a client pages does not jump to
        the top of the order, past the cursor, and so is neither skipped nor shown twice.
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
        if after is not None:
            statement = statement.having(
                tuple_(_last_at, Message.conversation_id)
                < tuple_(_at(after[0]), literal(after[1], Message.conversation_id.type))
            )
        statement = statement.order_by(_last_at.desc(), Message.conversation_id.desc()).limit(limit)
        rows = (await self.session.execute(statement)).all()
        taken = rows[0].as_of if rows else as_of
        return SummaryPageRows(rows=[_summary(row) for row in rows], as_of=taken)

    async def get_summary(self, tenant_id: str, conversation_id: str) -> ConversationSummary | None:
        statement = _summary_select().where(
            Message.tenant_id == tenant_id, Message.conversation_id == conversation_id, unexpired()
        )
        row = (await self.session.execute(statement)).one_or_none()
        return None if row is None else _summary(row)

    async def list_messages(
        self,
        tenant_id: str,
        conversation_id: str,
        *,
        order: SortOrder,
        role: str | None,
        kind: str | None,
        include_archived: bool,
        pii_kind: str | None = None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
        include_superseded: bool = False,
    ) -> list[Message]:
        """One page of the history, in (created_at, id) order; the index on (tenant_id,
        conversation_id, created_at) serves both directions."""
        statement = select(Message).where(
            Message.tenant_id == tenant_id, Message.conversation_id == conversation_id, unexpired()
        )
        if pii_kind is not None:
            statement = statement.where(Message.pii_kinds.contains([pii_kind]))
        if not include_archived:
            statement = statement.where(Message.archived_at.is_(None))
        if not include_superseded:
            statement = statement.where(Message.superseded_by.is_(None))
        if role is not None:
            statement = statement.where(Message.role == role)
        if kind is not None:
            statement = statement.where(Message.kind == kind)
        key = tuple_(Message.created_at, Message.id)
        bound = None if after is None else tuple_(_at(after[0]), literal(after[1], Message.id.type))
        if order is SortOrder.asc:
            if bound is not None:
                statement = statement.where(key > bound)
            statement = statement.order_by(Message.created_at, Message.id)
        else:
            if bound is not None:
                statement = statement.where(key < bound)
            statement = statement.order_by(Message.created_at.desc(), Message.id.desc())
        result = await self.session.execute(statement.limit(limit))
        return list(result.scalars())

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
