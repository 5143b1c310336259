"""Schemas of the message routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    computed_field,
    model_validator,
)

from memory_layer.kit.pagination import SortOrder
from memory_layer.kit.schemas import (
    METADATA_DESCRIPTION,
    NON_BLANK_PATTERN,
    CursorPage,
    Identifier,
    JSONBody,
    Metadata,
    NonBlankText,
    Timestamp,
    json_integer,
)
from memory_layer.messages.service import MessageSort, MetadataMode, UsageOutcome
from memory_layer.models.message import EmbeddingStatus, Kind, Role
from memory_layer.search.schemas import ChannelFilter, SearchFilterFields


def status_url(message_id: uuid.UUID, tenant_id: str) -> str:
    """The message's own URL, readable as given by the key that wrote it: it names the tenant,
    so service and admin keys need nothing added (`+` and `/` in a tenant id are encoded)."""
    return f"/v1/messages/{message_id}?tenant_id={quote(tenant_id, safe='')}"


# pgvector's HNSW index holds at most 2,000 dimensions (the column's N is at most that).
MAX_VECTOR_DIMENSIONS = 2000
EmbeddingModelName = Annotated[
    str, Field(min_length=1, max_length=128, pattern=NON_BLANK_PATTERN, examples=["my-model-v1"])
]


class MessageFields(JSONBody):
    """The fields of one message to remember (without the tenant)."""

    conversation_id: Identifier
    role: Annotated[Role, Strict(False)]
    kind: Annotated[Kind, Strict(False)] = Field(
        default=Kind.message,
        description="What the memory is: a conversation turn (message), or something distilled "
        "from turns (fact, preference, procedure, summary, event). Kinds age at their own pace "
        "in search (MEMORY_KIND_HALF_LIFE_HOURS).",
    )
    content: NonBlankText = Field(min_length=1, description="Message text; NUL bytes are rejected.")
    user_id: Identifier | None = None
    metadata: Metadata = Field(default_factory=dict, description=METADATA_DESCRIPTION)
    importance_override: float | None = Field(default=None, ge=0.0, le=1.0)
    client_message_id: Identifier | None = Field(
        default=None, description="Idempotency key: a retry with the same id returns the first message."
    )
    created_at: Timestamp | None = Field(
        default=None, description="For imports of older history; defaults to the server's time."
    )
    ttl_seconds: Annotated[
        int, Field(ge=1, le=100 * 365 * 86_400), Strict(False), BeforeValidator(json_integer)
    ] | None = Field(
        default=None,
        description="The message expires this many seconds after it is stored: from then on no "
        "read returns it, and retention deletes it. Default: the tenant policy's "
        "default_ttl_seconds (none unless set).",
    )
    expires_at: Timestamp | None = Field(
        default=None, description="The time the message expires (instead of ttl_seconds)."
    )
    channel: ChannelFilter = Field(
        default="default",
        description="The channel the message belongs to. A tenant with registered channels "
        "writes only to those and `default` (422 unknown_channel otherwise); a registered "
        "channel's TTL ceiling, PII rule, daily quota and encryption apply (docs/api.md, "
        "Channels).",
    )

    embedding: list[float] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_VECTOR_DIMENSIONS,
        description="The message's own vector, stored as given and never recomputed (the "
        "worker and `reembed` leave it alone): exactly MEMORY_EMBEDDING_DIMENSIONS numbers (else "
        "422 embedding_dimension_mismatch), not all zero. Requires embedding_model. Search "
        "compares vectors by cosine similarity.",
    )
    embedding_model: EmbeddingModelName | None = Field(
        default=None,
        description="The model that produced `embedding` (required with it). A text search "
        "uses only the vectors of the service's model (GET /v1/admin/readiness names it); a "
        "`vector` search those of the model it names.",
    )

    @model_validator(mode="after")
    def _one_expiry(self) -> MessageFields:
        if self.ttl_seconds is not None and self.expires_at is not None:
            raise ValueError("send ttl_seconds or expires_at, not both")
        if (self.embedding is None) != (self.embedding_model is None):
            raise ValueError("send embedding and embedding_model together")
        return self


class MessageCreate(MessageFields):
    """One conversation message to remember."""

    tenant_id: Identifier | None = Field(
        default=None, description="Required unless the API key is bound to a tenant."
    )


class MessageRead(BaseModel):
    """A stored message."""

    model_config = ConfigDict(from_attributes=True)

    message_id: uuid.UUID = Field(validation_alias="id")
    tenant_id: str
    conversation_id: str
    user_id: str | None
    role: Role
    kind: Kind
    content: str
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    importance: float
    created_at: datetime
    client_message_id: str | None
    embedding_status: EmbeddingStatus = Field(
        description="pending: queued for the worker (already found by keyword search); ready: "
        "embedded; failed: gave up after MEMORY_EMBEDDING_MAX_ATTEMPTS (see embedding_error)."
    )
    embedding_model: str | None
    embedding_attempts: int
    embedding_error: str | None = Field(description="The last embedding failure, if any.")
    embedded_at: datetime | None
    archived_at: datetime | None
    expires_at: datetime | None = Field(description="When the message expires; null: never.")
    channel: str = Field(default="default", description="The channel the message belongs to.")
    encrypted: bool = Field(
        default=False,
        validation_alias=AliasChoices("encrypted", "is_encrypted"),
        description="Stored encrypted at rest (an encrypted channel); the content shown is "
        "decrypted for the caller.",
    )
    pii_kinds: list[str] = Field(
        description="Kinds of personal data found in the content (PII mode detect or redact): "
        "email, phone, payment_card, iban, ip_address, us_ssn."
    )
    use_count: int = Field(default=0, description="Recorded uses (POST /v1/messages/{id}/usage).")
    success_count: int = Field(default=0, description="Uses recorded with outcome success.")
    failure_count: int = Field(default=0, description="Uses recorded with outcome failure.")
    last_used_at: datetime | None = Field(default=None, description="The last recorded use.")
    source_message_ids: list[uuid.UUID] | None = Field(
        default=None, description="A distilled memory (fact, summary): the turns it came from."
    )
    confidence: float | None = Field(default=None, description="A fact: how sure extraction was.")
    superseded_by: uuid.UUID | None = Field(
        default=None, description="A fact a newer one replaced: that fact's id."
    )
    valid_until: datetime | None = Field(
        default=None, description="A superseded fact: when the newer value was stated."
    )
    covers_through: datetime | None = Field(
        default=None, description="A summary: created_at of the last turn it covers."
    )

    @computed_field(  # type: ignore[prop-decorator]
        description="This message's URL (with its tenant_id): poll it for the embedding status; "
        "PATCH or DELETE it."
    )
    @property
    def status_url(self) -> str:
        return status_url(self.message_id, self.tenant_id)


class MessageBatchItem(MessageFields):
    """One message of a batch: the fields of POST /v1/messages, without tenant_id."""


class MessageUpdate(JSONBody):
    """The fields to change; those left out (or null) stay as they are."""

    content: NonBlankText | None = Field(
        default=None,
        min_length=1,
        description="New text; it is embedded again, and search finds the message by it.",
    )
    kind: Annotated[Kind, Strict(False)] | None = None
    importance: float | None = Field(default=None, ge=0.0, le=1.0)
    metadata: Metadata | None = Field(default=None, description=METADATA_DESCRIPTION)
    metadata_mode: Annotated[MetadataMode, Strict(False)] = Field(
        default=MetadataMode.merge,
        description="merge: `metadata` is a JSON merge patch (RFC 7396) on the stored metadata "
        "(a key set to null is removed, nested objects are merged); replace: `metadata` "
        "becomes the whole metadata.",
    )

    @model_validator(mode="after")
    def _something(self) -> MessageUpdate:
        if self.content is None and self.kind is None and self.importance is None and (
            self.metadata is None
        ):
            raise ValueError("nothing to change: send content, kind, importance or metadata")
        return self


class MessageDeleteResponse(BaseModel):
    """What a delete removed."""

    deleted: int = Field(description="Rows deleted: always 1 (a missing message is a 404).")


class MessageBatchRequest(JSONBody):
    """Up to MEMORY_MAX_BATCH_MESSAGES messages of one tenant, stored all or nothing."""

    tenant_id: Identifier | None = Field(
        default=None,
        description="The one tenant of the whole batch; required unless the API key is bound to "
        "a tenant. Items carry no tenant_id of their own.",
    )
    messages: list[MessageBatchItem] = Field(
        min_length=1, description="At most MEMORY_MAX_BATCH_MESSAGES (default 500)."
    )


class MessageBatchResult(BaseModel):
    """What became of one item of a batch."""

    message_id: uuid.UUID
    status: int = Field(
        description="200: stored with its vector (or failed for good); 202: queued for the "
        "embedding worker. The same rule as the status of POST /v1/messages.",
        examples=[200],
    )
    embedding_status: EmbeddingStatus
    replayed: bool = Field(
        description="True when the item's client_message_id was already stored (by an earlier "
        "request, or by an earlier item of this batch): nothing new was written for it."
    )
    status_url: str


class MessageBatchResponse(BaseModel):
    """One result per item, in the order of the request."""

    total: int
    items: list[MessageBatchResult]


class MessageListRequest(SearchFilterFields):
    """Which of the tenant's messages to list, across conversations (query string)."""

    tenant_id: Identifier | None = Field(
        default=None, description="Required unless the API key is bound to a tenant."
    )
    sort: MessageSort = Field(
        default=MessageSort.created_at,
        description="created_at: by time; importance: by importance, then time.",
    )
    order: SortOrder = Field(default=SortOrder.desc, description="desc: newest (or most important) first.")
    limit: int = Field(default=50, ge=1, le=1000, description="Items per page.")
    cursor: str | None = Field(
        default=None,
        description="`next_cursor` of the previous page, unchanged; only valid for the same tenant, "
        "filters and order (else `400 invalid_cursor`).",
    )


class MessageListResponse(CursorPage[MessageRead]):
    """One page of the tenant's messages."""


class UsageCreate(JSONBody):
    """One use of a memory (say, a procedure an agent followed), and how it went."""

    outcome: Annotated[UsageOutcome, Strict(False)] | None = Field(
        default=None,
        description="success or failure; left out when the use has no verdict. Failures lower "
        "the memory's score in search (MEMORY_SEARCH_FAILURE_PENALTY).",
    )
