"""Keyset pagination: one helper every listing calls, and its opaque, signed cursors.

A listing builds its `Select` (filters only, no ORDER BY, no LIMIT) and hands it to `paginate`
with the listing's `Keyset` (its sort columns and the position model its cursors carry) and a
`PageRequest` (limit, cursor). `paginate` checks the cursor, adds the keyset predicate (strictly
after the position), the order and `LIMIT limit + 1`, runs the statement, and turns the rows into
a `Page` whose `next_cursor` resumes after the last item: the extra row only says another page
exists.

A cursor is URL-safe base64 (no padding) of `payload || tag`, where payload is compact JSON

    {"v": 1, "s": {scope}, "p": {position}}

and tag is HMAC-SHA256(key, payload). The position is the sort key of the last item served (for
example created_at and id), so the next page starts strictly after it (`WHERE (created_at, id) >
(:at, :id)`): an item never moves between pages because rows were added or removed before it,
unlike OFFSET. The scope names everything that defines the listing (tenant, listing, order,
filters); a cursor is accepted only by a request whose scope is the same, so a cursor from another
tenant, another conversation, another order or other filters is `400 invalid_cursor`, as is a
tampered, truncated or garbled one. The page size is not part of the scope: it may change from one
page to the next.

The tag is what makes the cursor opaque: clients cannot build or edit one. The key is
MEMORY_CURSOR_SECRET. Without it a constant key is used; the tag then still detects accidental
damage and casual editing, but someone who reads this source can forge a cursor. Such a forgery
gains nothing: the tenant in the scope must equal the tenant the request's API key resolves to,
so a forged cursor can only point somewhere inside the caller's own tenant's listing, where the
caller could read anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy import ColumnElement, Select, literal, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from memory_layer.kit.errors import DomainError

VERSION = 1
TAG_BYTES = hashlib.sha256().digest_size
# Cursors are a few hundred characters; anything much longer is not one of ours.
MAX_CURSOR_CHARS = 2048
# Used when MEMORY_CURSOR_SECRET is unset; see the module docstring for what that still protects.
UNSET_SECRET_KEY = b"memory-layer:cursor:v1:MEMORY_CURSOR_SECRET-unset"
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")

ScopeValue = str | int | float | bool | None
Scope = Mapping[str, ScopeValue]

T = TypeVar("T")
U = TypeVar("U")
P = TypeVar("P", bound=BaseModel)


class InvalidCursor(DomainError):
    status_code = 400
    code = "invalid_cursor"


class SortOrder(StrEnum):
    asc = "asc"
    desc = "desc"


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; `next_cursor` is None on the last page."""

    items: list[T]
    next_cursor: str | None

    def map(self, convert: Callable[[T], U]) -> Page[U]:
        """The same page with every item converted (the cursor is unchanged)."""
        return Page(items=[convert(item) for item in self.items], next_cursor=self.next_cursor)


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class CursorCodec:
    """Signs and checks cursors with one key (built once per app from the settings)."""

    def __init__(self, secret: SecretStr | None) -> None:
        self._key = (
            secret.get_secret_value().encode() if secret is not None else UNSET_SECRET_KEY
        )

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def encode(self, scope: Scope, position: BaseModel) -> str:
        """A cursor that resumes the listing `scope` right after `position`."""
        payload = _canonical({"v": VERSION, "s": dict(scope), "p": position.model_dump(mode="json")})
        return base64.urlsafe_b64encode(payload + self._tag(payload)).rstrip(b"=").decode()

    def decode(self, cursor: str, scope: Scope, position_type: type[P]) -> P:
        """The position in `cursor`, if it is intact and belongs to the listing `scope`."""
        if len(cursor) > MAX_CURSOR_CHARS or not _BASE64URL.match(cursor):
            raise InvalidCursor("the cursor is malformed; pass next_cursor back unchanged")
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError) as exc:
            raise InvalidCursor("the cursor is malformed; pass next_cursor back unchanged") from exc
        payload, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
        if not payload or not hmac.compare_digest(tag, self._tag(payload)):
            raise InvalidCursor(
                "the cursor was altered, truncated or signed with another MEMORY_CURSOR_SECRET"
            )
        try:
            document = json.loads(payload)
        except ValueError as exc:  # pragma: no cover - only a forged, validly signed cursor
            raise InvalidCursor("the cursor is malformed") from exc
        if not isinstance(document, dict) or document.get("v") != VERSION:
            raise InvalidCursor("the cursor comes from another version of the service")
        if _canonical(document.get("s")) != _canonical(dict(scope)):
            raise InvalidCursor(
                "the cursor belongs to another listing (another tenant, conversation, order or "
                "filters); start again without a cursor"
            )
        try:
            return position_type.model_validate(document.get("p"))
        except ValidationError as exc:
            raise InvalidCursor("the cursor's position is not valid for this listing") from exc


def page_from_rows(
    rows: Sequence[T],
    limit: int,
    *,
    codec: CursorCodec,
    scope: Scope,
    position_of: Callable[[T], BaseModel],
) -> Page[T]:
    """Turn `limit + 1` fetched rows into a page: the extra row only says another page exists."""
    items = list(rows[:limit])
    if len(rows) <= limit or not items:
        return Page(items=items, next_cursor=None)
    return Page(items=items, next_cursor=codec.encode(scope, position_of(items[-1])))


@dataclass(frozen=True)
class PageRequest:
    """Which page of a listing: its size, and the previous page's `next_cursor` (None: the first)."""

    limit: int
    cursor: str | None = None


class Keyset(Generic[P]):
    """A listing's sort key: columns compared as one tuple, all in one direction.

    `columns` maps fields of the `position` model to the columns (or aggregates, with
    `aggregate=True`: the predicate then goes in HAVING) they hold, in sort order; the last must
    make the key unique (an id). Fields of `position` that are not sort columns are carried along
    unchanged (for instance the snapshot time a listing pins on its first page). A row gives its
    position by attribute: every field of `position` must be an attribute of the rows (an entity's
    column or a labelled column of the statement).
    """

    def __init__(
        self,
        position: type[P],
        columns: Mapping[str, ColumnElement[Any] | QueryableAttribute[Any]],
        *,
        order: SortOrder,
        aggregate: bool = False,
    ) -> None:
        unknown = set(columns) - set(position.model_fields)
        if unknown or not columns:
            raise ValueError(f"sort columns must be fields of {position.__name__}: {unknown}")
        self.position = position
        self.columns: dict[str, ColumnElement[Any]] = {
            name: column.expression for name, column in columns.items()
        }
        self.order = order
        self.aggregate = aggregate

    def after(self, position: P) -> ColumnElement[bool]:
        """Rows strictly after `position` in this order."""
        key = tuple_(*self.columns.values())
        bound = tuple_(
            *(literal(getattr(position, name), column.type) for name, column in self.columns.items())
        )
        return key > bound if self.order is SortOrder.asc else key < bound

    def order_by(self) -> list[ColumnElement[Any]]:
        """The ORDER BY clauses of this order."""
        if self.order is SortOrder.asc:
            return [column.asc() for column in self.columns.values()]
        return [column.desc() for column in self.columns.values()]

    def position_of(self, row: object) -> P:
        """The position of a fetched row (an entity or a Row)."""
        return self.position.model_validate(
            {name: getattr(row, name) for name in self.position.model_fields}
        )


async def paginate(
    session: AsyncSession,
    statement: Select[Any] | Callable[[P | None], Select[Any]],
    *,
    pagination: PageRequest,
    keyset: Keyset[P],
    codec: CursorCodec,
    scope: Scope,
) -> Page[Any]:
    """One page of the listing `statement`, in `keyset`'s order.

    `statement` selects and filters; it has no ORDER BY and no LIMIT (they are the keyset's). A
    statement selecting one entity pages those entities; any other pages Rows. A listing whose
    statement depends on the position (one that pins a snapshot on its first page) passes a
    function of the position instead (None on the first page). `scope` names the listing; a
    cursor is accepted only with the same scope (else `400 invalid_cursor`).
    """
    position = (
        codec.decode(pagination.cursor, scope, keyset.position) if pagination.cursor else None
    )
    built = statement(position) if callable(statement) else statement
    if position is not None:
        predicate = keyset.after(position)
        built = built.having(predicate) if keyset.aggregate else built.where(predicate)
    built = built.order_by(*keyset.order_by()).limit(pagination.limit + 1)
    result = await session.execute(built)
    rows: list[Any] = (
        list(result.scalars()) if len(built.column_descriptions) == 1 else list(result.all())
    )
    return page_from_rows(
        rows, pagination.limit, codec=codec, scope=scope, position_of=keyset.position_of
    )
