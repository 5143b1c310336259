"""Schemas of the tenant policy routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from memory_layer.kit.schemas import json_integer_or_null, json_number_or_null
from memory_layer.models.message import Kind
from memory_layer.models.policy import AuditLevel, PiiMode

DAYS = "Days after a message's creation; 0 means never."
# A century of days, of seconds; and the largest count the database stores (bigint).
MAX_DAYS = 36_525
MAX_SECONDS = MAX_DAYS * 86_400
MAX_COUNT = 2**63 - 1
# slowapi's limit syntax: `100/minute`, `10 per second`, `10/second;1000/hour`; empty: no limit.
_ONE_LIMIT = r"[0-9]+ *(/|per) *([0-9]+ *)?(second|minute|hour|day|month|year)s?"
RATE_LIMIT_PATTERN = rf"^({_ONE_LIMIT}( *[;,] *{_ONE_LIMIT})*)?$"


class KindRetentionFields(BaseModel):
    """Retention of one kind of message; null takes the tenant's own value."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)

    archive_after_days: float | None = Field(default=None, ge=0, le=MAX_DAYS, description=DAYS)
    delete_after_days: float | None = Field(default=None, ge=0, le=MAX_DAYS, description=DAYS)

    # JSON's types: `true` is no number of days, `"5"` none either.
    _numbers = field_validator("archive_after_days", "delete_after_days", mode="before")(
        json_number_or_null
    )


class PolicyFields(BaseModel):
    """A tenant's policy values."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)

    archive_after_days: float | None = Field(
        default=None, ge=0, le=MAX_DAYS, description=f"Archive messages this old (unless important). {DAYS}"
    )
    delete_after_days: float | None = Field(
        default=None, ge=0, le=MAX_DAYS,
        description=f"Delete messages this old, whatever their importance. {DAYS}",
    )
    retention_importance_below: float | None = Field(
        default=None, ge=0, le=1,
        description="Archiving takes only messages whose importance is below this.",
    )
    retention_by_kind: dict[Kind, KindRetentionFields] = Field(
        default_factory=dict,
        description="Per kind of message (fact, summary, ...): its own archive and delete ages.",
    )
    default_ttl_seconds: int | None = Field(
        default=None, ge=0, le=MAX_SECONDS,
        description="Messages stored without ttl_seconds or expires_at expire this many seconds "
        "after they are stored; 0 means they do not expire.",
    )
    max_messages: int | None = Field(
        default=None, ge=0, le=MAX_COUNT, description="Stored messages; 0: no quota."
    )
    max_content_bytes: int | None = Field(
        default=None, ge=0, le=MAX_COUNT, description="Bytes of message content (UTF-8); 0: no quota."
    )
    max_state_bytes: int | None = Field(
        default=None, ge=0, le=MAX_COUNT, description="Bytes of conversation state documents; 0: no quota."
    )
    max_messages_per_conversation: int | None = Field(
        default=None, ge=0, le=MAX_COUNT,
        description="Stored messages per conversation (every kind, summaries and facts too); a "
        "write past it is refused with 409 conversation_quota_exceeded, nothing trimmed; 0: no "
        "quota.",
    )
    rate_limit: str | None = Field(
        default=None, max_length=64, pattern=RATE_LIMIT_PATTERN, examples=["100/minute"],
        description="The tenant's request rate limit in slowapi syntax ('100/minute', "
        "'10/second;1000/hour'); '' means none.",
    )
    pii_mode: PiiMode | None = Field(
        default=None,
        description="off; detect (record the kinds found in `pii_kinds`); redact (replace each "
        "finding with a placeholder such as [EMAIL] before storing or embedding); reject (422).",
    )
    extract_facts: bool | None = Field(
        default=None,
        description="The worker distils facts and preferences from the tenant's user turns "
        "(MEMORY_EXTRACT_FACTS).",
    )
    summarize: bool | None = Field(
        default=None,
        description="The worker keeps a running summary of each conversation "
        "(MEMORY_SUMMARIZE).",
    )

    audit_level: AuditLevel | None = Field(
        default=None,
        description="What the audit log records of the tenant's requests: admin (operators' "
        "actions only); writes (also every write, edit and delete of its data: `api.write`); "
        "all (also every read, listing, search and context call: `api.read`).",
    )

    # JSON's types: `"max_state_bytes": false` is no quota of 0 bytes, `"0.5"` no share.
    _integers = field_validator(
        "default_ttl_seconds", "max_messages", "max_content_bytes", "max_state_bytes",
        "max_messages_per_conversation", mode="before",
    )(json_integer_or_null)
    _numbers = field_validator(
        "archive_after_days", "delete_after_days", "retention_importance_below", mode="before"
    )(json_number_or_null)


class PolicyUpdate(PolicyFields):
    """The tenant's overrides, all at once (PUT): a field left out or null takes the default
    (the MEMORY_* setting)."""


class EffectivePolicyRead(PolicyFields):
    """The values the tenant's requests follow now: every field set."""

    archive_after_days: float
    delete_after_days: float
    retention_importance_below: float
    default_ttl_seconds: int
    max_messages: int
    max_content_bytes: int
    max_state_bytes: int
    max_messages_per_conversation: int
    rate_limit: str
    pii_mode: PiiMode
    extract_facts: bool
    summarize: bool
    audit_level: AuditLevel


class PolicyRead(BaseModel):
    """A tenant's policy: the effective values and the overrides they come from."""

    model_config = ConfigDict(from_attributes=True)

    tenant_id: str
    effective: EffectivePolicyRead
    overrides: PolicyFields = Field(description="What the tenant stores; null fields take the default.")
    updated_at: datetime | None = Field(description="When the overrides last changed; null if never.")
