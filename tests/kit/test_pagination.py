"""Signed cursors: a round trip works; anything tampered, foreign or garbled is `invalid_cursor`."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import AwareDatetime, BaseModel, SecretStr
from sqlalchemy import column

from memory_layer.kit.pagination import (
    CursorCodec,
    InvalidCursor,
    Keyset,
    SortOrder,
    page_from_rows,
)


class Position(BaseModel):
    created_at: AwareDatetime
    id: uuid.UUID


SCOPE = {"tenant_id": "acme", "listing": "conversation_messages", "order": "asc", "role": None}
POSITION = Position(created_at=datetime(2025, 5, 1, 12, 0, 0, 123456, tzinfo=UTC), id=uuid.uuid4())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _raw(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))


@pytest.mark.parametrize("secret", [None, SecretStr("s3cret-value")])
def test_a_cursor_round_trips_and_is_url_safe(secret: SecretStr | None) -> None:
    codec = CursorCodec(secret)
    cursor = codec.encode(SCOPE, POSITION)
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert codec.decode(cursor, dict(SCOPE), Position) == POSITION  # microseconds survive


def test_another_scope_is_refused() -> None:
    codec = CursorCodec(None)
    cursor = codec.encode(SCOPE, POSITION)
    for changed in (
        {**SCOPE, "tenant_id": "other"},
        {**SCOPE, "order": "desc"},
        {**SCOPE, "role": "user"},
        {**SCOPE, "listing": "conversations"},
        {key: value for key, value in SCOPE.items() if key != "role"},
    ):
        with pytest.raises(InvalidCursor, match="another listing"):
            codec.decode(cursor, changed, Position)


def test_tampering_is_detected_even_with_the_built_in_key() -> None:
    codec = CursorCodec(None)
    raw = _raw(codec.encode(SCOPE, POSITION))
    payload, tag = raw[:-32], raw[-32:]
    document = json.loads(payload)
    document["s"]["tenant_id"] = "victim"
    edited = json.dumps(document, separators=(",", ":")).encode()
    for forged in (
        _b64(edited + tag),  # another payload under the old tag
        _b64(payload + bytes([tag[0] ^ 1]) + tag[1:]),  # one bit of the tag flipped
        _b64(payload[:-1] + tag),  # truncated payload
        _b64(tag),  # no payload at all
    ):
        with pytest.raises(InvalidCursor, match="altered"):
            codec.decode(forged, SCOPE, Position)


def test_a_cursor_signed_with_another_secret_is_refused() -> None:
    cursor = CursorCodec(SecretStr("one")).encode(SCOPE, POSITION)
    with pytest.raises(InvalidCursor):
        CursorCodec(SecretStr("two")).decode(cursor, SCOPE, Position)
    with pytest.raises(InvalidCursor):
        CursorCodec(None).decode(cursor, SCOPE, Position)


@pytest.mark.parametrize(
    "garbage", ["", "not a cursor", "abc", "====", "%00", "a" * 5000, "é", "YWJj.ZGVm"]
)
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(InvalidCursor):
        CursorCodec(None).decode(garbage, SCOPE, Position)


def test_a_validly_signed_cursor_with_a_wrong_position_is_refused() -> None:
    class Other(BaseModel):
        at: str

    codec = CursorCodec(None)
    cursor = codec.encode(SCOPE, Other(at="yesterday"))
    with pytest.raises(InvalidCursor, match="position"):
        codec.decode(cursor, SCOPE, Position)


def test_page_from_rows_gives_a_cursor_only_when_a_row_was_left_over() -> None:
    codec = CursorCodec(None)

    def position_of(n: int) -> Position:
        return Position(created_at=datetime(2025, 1, 1, tzinfo=UTC), id=uuid.UUID(int=n))

    full = page_from_rows([1, 2, 3], 2, codec=codec, scope=SCOPE, position_of=position_of)
    assert full.items == [1, 2]
    assert full.next_cursor is not None
    assert codec.decode(full.next_cursor, SCOPE, Position).id == uuid.UUID(int=2)
    last = page_from_rows([1, 2], 2, codec=codec, scope=SCOPE, position_of=position_of)
    assert last.items == [1, 2]
    assert last.next_cursor is None
    nothing: list[int] = []
    empty = page_from_rows(nothing, 2, codec=codec, scope=SCOPE, position_of=position_of)
    assert empty.items == []
    assert empty.next_cursor is None


def test_a_keyset_names_only_fields_of_its_position() -> None:
    with pytest.raises(ValueError, match="fields of Position"):
        Keyset(Position, {"created_at": column("created_at"), "rank": column("rank")}, order=SortOrder.asc)
    keyset = Keyset(Position, {"created_at": column("created_at"), "id": column("id")}, order=SortOrder.desc)
    predicate = str(keyset.after(POSITION))
    assert "(created_at, id) <" in predicate
    assert [str(clause) for clause in keyset.order_by()] == ["created_at DESC", "id DESC"]
