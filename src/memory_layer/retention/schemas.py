"""Schemas of the retention route."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from memory_layer.config import RetentionAction
from memory_layer.kit.schemas import Identifier


class RetentionRequest(BaseModel):
    """A retention run; unset fields take the MEMORY_RETENTION_* settings."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = Field(
        default=None, description="Limit to one tenant; default: MEMORY_RETENTION_TENANTS or all."
    )
    older_than_days: float | None = Field(default=None, gt=0)
    importance_below: float | None = Field(default=None, ge=0.0, le=1.0)
    action: RetentionAction | None = None
    dry_run: bool = False


class RetentionResponse(BaseModel):
    """What the run changed (or, with dry_run, would change)."""

    model_config = ConfigDict(from_attributes=True)

    dry_run: bool
    action: RetentionAction
    cutoff: datetime
    importance_below: float
    tenants: list[str] | None = Field(description="Tenants covered; null means all.")
    matched: int
    archived: int
    deleted: int
