"""Field types and validators shared by the schemas of several domains."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
)

# Identifiers clients choose: ASCII letters, digits and `_.:@/+=-`, at most 128 characters. Spelled
# out rather than `\w`, which is Unicode-aware here but ASCII-only in the JSON Schema regex dialect
# that clients generated from /openapi.json apply.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9_.:@/+=-]{1,128}$"
Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN, examples=["my-app"])]

# Text without NUL (PostgreSQL text and jsonb cannot hold it).
NO_NUL_PATTERN = r"^[^\x00]*$"
# Whitespace as str.strip() and the JSON Schema regex dialect both see it, spelled out so the
# documented pattern and the server's check agree on every character.
_SPACE = r"\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
# At least one character that is neither whitespace nor NUL, and no NUL anywhere.
NON_BLANK_PATTERN = rf"^[^\x00]*[^{_SPACE}\x00][^\x00]*$"


def reject_nul(value: str) -> str:
    """PostgreSQL text cannot hold NUL; refuse it instead of failing at INSERT time."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    return value


def require_text(value: str) -> str:
    """Text fields must hold something besides whitespace (and never NUL)."""
    reject_nul(value)
    if not value.strip():
        raise ValueError("must contain non-whitespace text")
    return value


# Message content and query text: at least one non-whitespace character, no NUL.
NonBlankText = Annotated[str, Field(pattern=NON_BLANK_PATTERN), AfterValidator(require_text)]

class JSONBody(BaseModel):
    """A JSON request body, validated with JSON's types: `false` is no number, `"5"` no integer,
    `1` no boolean (the document says the type; a client sending another has a bug). Fields whose
    JSON form is a string read as a richer type (timestamps, UUIDs, enums) mark themselves
    `Strict(False)`: FastAPI hands the parsed JSON over as Python values."""

    model_config = ConfigDict(extra="forbid", strict=True)


_RFC3339_START = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _timestamp_text(value: object) -> object:
    """A timestamp is an RFC 3339 string (`2026-01-31T12:00:00Z`); a number, in JSON or in a query
    string, is refused rather than read as Unix time."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339_START.match(value):
        raise ValueError("must be an RFC 3339 date-time string, such as 2026-01-31T12:00:00Z")
    return value


def _representable(value: datetime) -> datetime:
    """0001-01-01T00:00:00+14:00 is a valid RFC 3339 time before year 1 in UTC: no database or
    client can hold it."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("lies before 0001-01-01T00:00:00Z") from exc
    if utc.replace(tzinfo=None) in (datetime.min, datetime.max):
        # asyncpg writes Python's first and last instants as -infinity and infinity, which come
        # back as naive datetimes: refused rather than stored as something else.
        raise ValueError(
            "must lie after 0001-01-01T00:00:00Z and before 9999-12-31T23:59:59.999999Z (the "
            "database driver stores those two instants as -infinity and infinity)"
        )
    return value


# A timezone-aware timestamp given as an RFC 3339 string (in JSON bodies and query strings).
Timestamp = Annotated[
    AwareDatetime, Strict(False), BeforeValidator(_timestamp_text), AfterValidator(_representable)
]
def json_integer(value: object) -> object:
    """An integer in JSON: `5` or `5.0` (JSON Schema counts both), never `true` or `"5"`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON integer")
    return value


def json_number(value: object) -> object:
    """A number in JSON: never `true` or `"0.5"` (a non-strict float field would read both)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON number")
    return value


def json_integer_or_null(value: object) -> object:
    """json_integer for an optional field (a `field_validator(..., mode="before")`)."""
    return value if value is None else json_integer(value)


def json_number_or_null(value: object) -> object:
    """json_number for an optional field (a `field_validator(..., mode="before")`)."""
    return value if value is None else json_number(value)


# An integer in a JSON body. With bounds, write them before the validator so the document shows
# them as minimum/maximum: Annotated[int, Field(ge=1), Strict(False), BeforeValidator(json_integer)].
JSONInt = Annotated[int, Strict(False), BeforeValidator(json_integer)]
# A UUID in a JSON body (a string).
UUIDText = Annotated[uuid.UUID, Strict(False)]

METADATA_DESCRIPTION = (
    "Any JSON object (at most MEMORY_MAX_METADATA_BYTES as JSON). No key and no string anywhere in "
    "it may contain NUL (\\u0000): PostgreSQL cannot store it."
)
# Free-form metadata: keys without NUL (propertyNames); nested strings are checked by the service.
Metadata = Annotated[
    dict[str, Any],
    Field(json_schema_extra={"propertyNames": {"pattern": NO_NUL_PATTERN}}),
]


ItemT = TypeVar("ItemT")


class CursorPage(BaseModel, Generic[ItemT]):
    """One page of a cursor-paged listing; subclass it with the item type and the listing's docstring
    (a subclass keeps its own name in OpenAPI). Validates from a `kit.pagination.Page` with
    `model_validate(page, from_attributes=True)`."""

    items: list[ItemT]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx body: a stable code to branch on and a human-readable detail."""

    error: str = Field(examples=["tenant_mismatch"])
    detail: object = Field(examples=["this API key may only act for tenant 'acme'"])


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=`: each of these statuses answers with an ErrorResponse body."""
    return {code: {"model": ErrorResponse} for code in codes}
