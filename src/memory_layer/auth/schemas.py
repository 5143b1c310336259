"""Schemas of the API key routes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from memory_layer.kit.schemas import CursorPage, Identifier, Timestamp
from memory_layer.models.api_key import KeyScope


class ApiKeyCreate(BaseModel):
    """A new API key: its label, tenant, scopes and expiry."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$", examples=["chatbot"])
    tenant_id: Identifier | None = Field(
        default=None,
        description="Bind the key to this tenant (it then acts only for it); null: any tenant, "
        "named per request. A key bound to a tenant cannot hold the admin scope.",
    )
    scopes: list[KeyScope] = Field(
        default=[KeyScope.read, KeyScope.write], min_length=1, description="What the key may do."
    )
    expires_at: Timestamp | None = Field(
        default=None,
        description="From this time the key is refused (401 `expired_api_key`); in the future.",
    )

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return value


class ApiKeyRead(BaseModel):
    """A stored API key as listed: never its secret or hash."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    tenant_id: str | None = Field(description="The tenant the key is bound to; null: any tenant.")
    scopes: list[KeyScope]
    key_prefix: str = Field(description="The key's first characters, to recognise it.")
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    """The key just created, with its secret: shown this once, never again."""

    api_key: str = Field(description="The secret to send in X-API-Key. Store it now.")


class ApiKeyListRequest(BaseModel):
    """Which keys to list (query string)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = Field(default=None, description="Only keys bound to this tenant.")
    include_revoked: bool = Field(default=False, description="Also list revoked keys.")
    limit: int = Field(default=50, ge=1, le=1000, description="Items per page.")
    cursor: str | None = Field(
        default=None, description="`next_cursor` of the previous page, unchanged."
    )


class ApiKeyListResponse(CursorPage[ApiKeyRead]):
    """One page of stored API keys, newest first."""
