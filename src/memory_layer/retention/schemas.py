"""Schemas of the retention route."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict

from memory_layer.config import RetentionAction
from memory_layer.kit.schemas import Identifier, JSONBody

MAX_AGE_DAYS = 36_525


class RetentionRequest(JSONBody):
    """A retention run. Without older_than_days, importance_below and action, each tenant's
    policy applies (GET /v1/admin/tenants/{tenant_id}/policy); with any of them, that one rule,
    its other values from the MEMORY_RETENTION_* settings. Every run deletes expired messages."""

    tenant_id: Identifier | None = Field(
        default=None, description="Limit to one tenant; default: MEMORY_RETENTION_TENANTS or all."
    )
    # At most a century: the cutoff (now minus this) must stay a representable date.
    older_than_days: float | None = Field(default=None, gt=0, le=MAX_AGE_DAYS)
    importance_below: float | None = Field(default=None, ge=0.0, le=1.0)
    action: Annotated[RetentionAction, Strict(False)] | None = None
    dry_run: bool = False


class RetentionResponse(BaseModel):
    """What the run changed (or, with dry_run, would change)."""

    model_config = ConfigDict(from_attributes=True)

    dry_run: bool
    by_policy: bool = Field(description="True when each tenant's policy applied.")
    action: RetentionAction | None = Field(description="The explicit rule's; null by policy.")
    cutoff: datetime | None = Field(description="The explicit rule's; null by policy.")
    importance_below: float | None = Field(description="The explicit rule's; null by policy.")
    tenants: list[str] | None = Field(description="Tenants covered; null means all.")
    matched: int = Field(description="Messages the archive and delete rules matched.")
    archived: int
    deleted: int
    expired: int = Field(description="Expired messages deleted (counted, with dry_run).")
    runs_deleted: int = Field(
        default=0,
        description="Runs (with their task outputs) created before their tenant's "
        "delete_after_days, deleted (counted, with dry_run); runs follow the policies only.",
    )
