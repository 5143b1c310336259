"""Field types and validators shared by the schemas of several domains."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, Field

# Identifiers clients choose: printable, no spaces or control characters, at most 128 characters.
IDENTIFIER_PATTERN = r"^[\w.:@/+=-]{1,128}$"
Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN, examples=["my-app"])]


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
NonBlankText = Annotated[str, AfterValidator(require_text)]


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
