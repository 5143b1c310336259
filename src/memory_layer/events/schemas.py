"""Schemas of the event stream routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator

from memory_layer.kit.pagination import SortOrder
from memory_layer.kit.schemas import (
    CursorPage,
    Identifier,
    JSONBody,
    NonBlankText,
    Timestamp,
    json_integer,
)

TYPE_CHARS = r"[A-Za-z0-9_.:@/+=-]{1,128}"
EventType = Annotated[str, Field(pattern=rf"^{TYPE_CHARS}$", examples=["tool.call"])]
MAX_WAIT_SECONDS = 30.0


def _tenant_field() -> Any:
    return Field(default=None, description="Required unless the API key is bound to a tenant.")


class EventCreate(JSONBody):
    """An event to append to the conversation's stream (events are never edited)."""

    tenant_id: Identifier | None = _tenant_field()
    type: EventType = Field(description="What happened, e.g. `tool.call`; reads filter by it.")
    data: Any = Field(default_factory=dict, description="Any JSON value (no NUL characters).")
    description: NonBlankText | None = Field(
        default=None,
        description="Text embedded and searched like a message (kind `event`), so episodic "
        "search finds the event; subject to the tenant's PII mode.",
    )
    user_id: Identifier | None = Field(
        default=None, description="The person the event concerns: erasing them erases it."
    )
    ttl_seconds: Annotated[
        int, Field(ge=1, le=100 * 365 * 86_400), Strict(False), BeforeValidator(json_integer)
    ] | None = Field(
        default=None,
        description="The event expires this many seconds after it is stored (default: the "
        "tenant policy's default_ttl_seconds).",
    )
    expires_at: Timestamp | None = Field(
        default=None, description="The time the event expires (instead of ttl_seconds)."
    )

    @model_validator(mode="after")
    def _one_expiry(self) -> EventCreate:
        if self.ttl_seconds is not None and self.expires_at is not None:
            raise ValueError("send ttl_seconds or expires_at, not both")
        return self


class EventListRequest(BaseModel):
    """Which events of the stream to read (query string)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = _tenant_field()
    after: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="Only events with a larger `seq`."
    )
    type: str | None = Field(
        default=None,
        pattern=rf"^{TYPE_CHARS}(,{TYPE_CHARS}){{0,19}}$",
        description="Only events of these types: one, or up to 20 separated by commas "
        "(`type=tool.call,tool.result`).",
    )
    order: SortOrder = Field(default=SortOrder.asc, description="asc: oldest first; desc: newest first.")
    limit: int = Field(default=100, ge=1, le=1000, description="Events per page.")
    cursor: str | None = Field(
        default=None,
        description="`next_cursor` of the previous page, unchanged; only valid for the same "
        "tenant, stream, order, `after` and types (else `400 invalid_cursor`).",
    )
    wait_seconds: float = Field(
        default=0.0, ge=0.0, le=MAX_WAIT_SECONDS,
        description="Long poll: when no event matches yet, wait up to this long for one to be "
        "appended (woken by the append, not by polling), then answer.",
    )


class EventRead(BaseModel):
    """One event of a stream."""

    conversation_id: str
    seq: int = Field(description="The event's number in its stream: 1, 2, 3, ...")
    type: str
    data: Any
    description: str | None
    message_id: str | None = Field(
        description="The message (kind `event`) that makes the description searchable."
    )
    user_id: str | None
    created_at: datetime
    expires_at: datetime | None


class EventListResponse(CursorPage[EventRead]):
    """A page of a conversation's events."""
