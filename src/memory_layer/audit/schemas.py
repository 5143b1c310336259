"""Schemas of the audit route."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from memory_layer.kit.schemas import CursorPage, Identifier, Timestamp
from memory_layer.models.audit import AuditAction


class AuditListRequest(BaseModel):
    """Which audit entries to list (query string)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = Field(default=None, description="Only this tenant's entries.")
    action: AuditAction | None = Field(default=None, description="Only this action.")
    since: Timestamp | None = Field(
        default=None, description="Only entries at or after this time (RFC 3339)."
    )
    limit: int = Field(default=50, ge=1, le=1000, description="Items per page.")
    cursor: str | None = Field(
        default=None, description="`next_cursor` of the previous page, unchanged."
    )


class AuditEventRead(BaseModel):
    """One audit entry: who did what, when, to what; never any content."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    occurred_at: datetime
    tenant_id: str | None = Field(description="Null when the action concerned no single tenant.")
    action: AuditAction
    actor: str = Field(description="The acting key's label (`key:<id>`, `admin-key`, `cli` ...).")
    key_id: uuid.UUID | None = Field(description="The acting stored key's id, if it was one.")
    target: str | None = Field(description="What was acted on, as `kind:id`.")
    counts: dict[str, int] = Field(description="Rows or lines the action touched.")
    request_id: str | None = Field(description="The request's X-Request-ID, when it sent one.")
    route: str | None = Field(
        default=None,
        description="`METHOD /path` of an `api.write` or `api.read` entry (the tenant's "
        "audit_level); null for the others.",
    )


class AuditListResponse(CursorPage[AuditEventRead]):
    """One page of audit entries, newest first."""
