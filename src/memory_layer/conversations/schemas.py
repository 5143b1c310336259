"""Schemas of the conversation routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from memory_layer.kit.pagination import SortOrder
from memory_layer.kit.schemas import (
    METADATA_DESCRIPTION,
    NO_NUL_PATTERN,
    CursorPage,
    Identifier,
    JSONBody,
    Metadata,
    Timestamp,
    json_integer_or_null,
)
from memory_layer.messages.schemas import MessageRead
from memory_layer.models.message import Kind, Role
from memory_layer.models.policy import PiiKind


def _tenant_field() -> Any:
    return Field(default=None, description="Required unless the API key is bound to a tenant.")


# A conversation's tag: a word or short label, without NUL.
Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL_PATTERN, examples=["travel"])]
MAX_TAGS = 50
LIMIT_DESCRIPTION = "Items per page."
CURSOR_DESCRIPTION = (
    "`next_cursor` of the previous page, unchanged; only valid for the same tenant, listing and "
    "filters (else `400 invalid_cursor`)."
)


class ConversationListRequest(BaseModel):
    """Which conversations to list (query string)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = _tenant_field()
    user_id: Identifier | None = Field(
        default=None, description="Only conversations in which this user wrote at least one message."
    )
    since: Timestamp | None = Field(
        default=None, description="Only conversations whose last message is at or after this time."
    )
    until: Timestamp | None = Field(
        default=None, description="Only conversations whose last message is at or before this time."
    )
    tag: Tag | None = Field(
        default=None, description="Only conversations whose tags (PATCH) include this one."
    )
    limit: int = Field(default=50, ge=1, le=1000, description=LIMIT_DESCRIPTION)
    cursor: str | None = Field(default=None, description=CURSOR_DESCRIPTION)

    @model_validator(mode="after")
    def _window(self) -> ConversationListRequest:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError("since must not be after until")
        return self


class ConversationRead(BaseModel):
    """A conversation, summarised from its stored messages (archived ones included)."""

    model_config = ConfigDict(from_attributes=True)

    conversation_id: str
    message_count: int = Field(description="Stored messages, archived ones included.")
    archived_count: int = Field(description="How many of them are archived.")
    first_message_at: datetime
    last_message_at: datetime
    user_id: str | None = Field(
        description="The conversation's user when its messages name exactly one user_id, else null."
    )
    title: str | None = Field(default=None, description="Set with PATCH; null until then.")
    tags: list[str] = Field(default_factory=list, description="Set with PATCH.")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="The conversation's own metadata (PATCH)."
    )


class ConversationListResponse(CursorPage[ConversationRead]):
    """One page of conversations, most recently active first."""


class ConversationMessagesRequest(BaseModel):
    """Which messages of the conversation to list (query string)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = _tenant_field()
    order: SortOrder = Field(
        default=SortOrder.asc,
        description="asc: oldest first (chronological); desc: newest first, so "
        "`order=desc&limit=N` gives the last N turns.",
    )
    limit: int = Field(default=50, ge=1, le=1000, description=LIMIT_DESCRIPTION)
    cursor: str | None = Field(default=None, description=CURSOR_DESCRIPTION)
    include_archived: bool = Field(default=False, description="Also list archived messages.")
    include_superseded: bool = Field(
        default=False, description="Also list facts a newer fact replaced (superseded_by is set)."
    )
    role: Role | None = None
    kind: Kind | None = None
    pii_kind: PiiKind | None = Field(
        default=None,
        description="Only messages in whose content this kind of personal data was found (PII "
        "mode detect or redact).",
    )
    channel: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9_]*$", max_length=50,
        description="Only messages of this channel.",
    )


class ConversationMessagesResponse(CursorPage[MessageRead]):
    """One page of a conversation's messages."""


class ConversationScopeRequest(BaseModel):
    """The tenant of a route on one conversation (query string)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = _tenant_field()


class ConversationPatch(JSONBody):
    """The conversation's own title, tags or metadata to set; fields left out stay as they are."""

    title: Annotated[str, Field(min_length=1, max_length=500, pattern=NO_NUL_PATTERN)] | None = Field(
        default=None, description="A name for the conversation; null removes it."
    )
    tags: list[Tag] = Field(
        default_factory=list, max_length=MAX_TAGS,
        description=f"Replaces the tags (at most {MAX_TAGS}); the listing filters on them (`tag`).",
    )
    metadata: Metadata = Field(
        default_factory=dict,
        description="Replaces the conversation's metadata. " + METADATA_DESCRIPTION,
    )

    @model_validator(mode="after")
    def _something(self) -> ConversationPatch:
        if not self.model_fields_set:
            raise ValueError("nothing to change: send title, tags or metadata")
        return self


class ConversationDescriptionRead(BaseModel):
    """A conversation's own metadata, as stored."""

    model_config = ConfigDict(from_attributes=True)

    conversation_id: str
    title: str | None
    tags: list[str]
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("metadata_", "metadata"))
    created_at: datetime
    updated_at: datetime


class ConversationDeleteResponse(BaseModel):
    """What deleting the conversation removed."""

    deleted: int = Field(description="Messages deleted, archived ones included.")


# Working memory (conversation state).
TTL_DESCRIPTION = "Seconds until the state expires (gone for every reader at once); none: no expiry."
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600


class ConversationStatePut(BaseModel):
    """The whole state document of a conversation, replacing any previous one."""

    model_config = ConfigDict(extra="forbid")

    state: dict[str, Any] = Field(
        description="Any JSON object: the agent's goal, slots, plan.",
        examples=[{"goal": "book a table", "slots": {"people": 4}}],
    )
    ttl_seconds: int | None = Field(default=None, ge=1, le=MAX_TTL_SECONDS, description=TTL_DESCRIPTION)
    user_id: Identifier | None = Field(
        default=None,
        description="The person the conversation belongs to: erasing them erases this state.",
    )

    # JSON's types: `true` is no number of seconds.
    _integers = field_validator("ttl_seconds", mode="before")(json_integer_or_null)


class ConversationStatePatchRequest(BaseModel):
    """Options of a merge patch (query string)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = _tenant_field()
    ttl_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TTL_SECONDS,
        description="Renew the expiry to this many seconds from now; without it the expiry is kept.",
    )


class ConversationStateRead(BaseModel):
    """A conversation's state document with its version (also in the ETag header)."""

    model_config = ConfigDict(from_attributes=True)

    conversation_id: str
    state: dict[str, Any] = Field(validation_alias=AliasChoices("document", "state"))
    version: int = Field(description="1 when created, one more at every change.")
    etag: str = Field(description="The ETag header's value: send it in If-Match to change this version.")
    user_id: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
