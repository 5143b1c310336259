"""Schemas of the channel routes, and of the channels YAML file (`memory-layer channels apply`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
)

from memory_layer.channels.service import (
    NAME_MAX,
    NAME_PATTERN,
    RESERVED,
    TTL_MAX,
    TTL_MIN,
    ChannelSettings,
    name_problem,
)
from memory_layer.kit.schemas import CursorPage, json_integer
from memory_layer.models.channel import ChannelPii

MAX_BYTES = 2**63 - 1


def _channel_name(value: str) -> str:
    problem = name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


ChannelName = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN, max_length=NAME_MAX),
    AfterValidator(_channel_name),
    Field(
        description=f"`{NAME_PATTERN}`, at most {NAME_MAX} characters, not "
        f"{', '.join(sorted(RESERVED))}.",
        examples=["working"],
        json_schema_extra={"pattern": NAME_PATTERN, "not": {"enum": sorted(RESERVED)}},
    ),
]


class ChannelFields(BaseModel):
    """A channel's rules (the body of PUT, one entry of the YAML file). Unknown fields and wrong
    types are errors: `ttl_sec: "60"` is no number."""

    model_config = ConfigDict(extra="forbid", strict=True, from_attributes=True)

    # JSON Schema counts 3600.0 an integer too; `true` and "3600" are none.
    ttl_sec: Annotated[
        int, Field(ge=TTL_MIN, le=TTL_MAX), Strict(False), BeforeValidator(json_integer)
    ] | None = Field(
        default=None,
        description=f"Seconds a message on the channel lives ({TTL_MIN} to {TTL_MAX}), and the "
        "ceiling of a message's own ttl_seconds or expires_at (422 ttl_violation past it). "
        "Null: the tenant's default TTL, no ceiling.",
    )
    encrypt: bool = Field(
        default=False,
        description="Store content and metadata encrypted (AES-GCM, MEMORY_ENCRYPTION_KEYS). "
        "Keyword search cannot see encrypted text: search there is by vector only.",
    )
    quota_bytes: Annotated[
        int, Field(ge=1, le=MAX_BYTES), Strict(False), BeforeValidator(json_integer)
    ] | None = Field(
        default=None,
        description="Bytes of content one user may write to the channel per UTC day (429 "
        "quota_exceeded past it, naming when it resets). Null: no quota.",
    )
    # YAML and JSON have no enum type: the rule is a string of these.
    pii: Annotated[ChannelPii, Strict(False)] = Field(
        default=ChannelPii.allow,
        description="What personal data gets here: allow (the tenant's PII mode applies), redact "
        "(replaced by placeholders), refuse (422 pii_rejected), require_encryption (only on an "
        "encrypted channel: 422 encryption_required on one that is not).",
    )

    def settings(self) -> ChannelSettings:
        return ChannelSettings(
            ttl_sec=self.ttl_sec, encrypt=self.encrypt, quota_bytes=self.quota_bytes, pii=self.pii
        )


class ChannelPut(ChannelFields):
    """Register a channel, or replace its rules (absent fields take their defaults)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ChannelRead(ChannelFields):
    """A registered channel."""

    model_config = ConfigDict(from_attributes=True)

    tenant_id: str
    name: str
    created_at: datetime
    updated_at: datetime


class ChannelListRequest(BaseModel):
    """Which page of channels (query string)."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=1000, description="Items per page.")
    cursor: str | None = Field(
        default=None, description="`next_cursor` of the previous page, unchanged."
    )


class ChannelListResponse(CursorPage[ChannelRead]):
    """A tenant's registered channels, by name."""


class ChannelsDocument(BaseModel):
    """The channels YAML file: `channels:` maps each channel's name to its rules."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        title="memory-layer channels",
        json_schema_extra={
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "examples": [
                {
                    "channels": {
                        "working": {"ttl_sec": 3600, "quota_bytes": 1000000},
                        "procedure": {"encrypt": True, "pii": "require_encryption"},
                    }
                }
            ],
        },
    )

    channels: dict[ChannelName, ChannelFields] = Field(default_factory=dict)


def document_schema() -> dict[str, Any]:
    """The JSON Schema of the channels YAML file (GET /v1/admin/channels/schema, docs)."""
    return ChannelsDocument.model_json_schema()
