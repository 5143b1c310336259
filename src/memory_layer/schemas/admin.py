"""Schemas of the admin routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from memory_layer.config import RetentionAction
from memory_layer.schemas.common import Identifier


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

    dry_run: bool
    action: RetentionAction
    cutoff: datetime
    importance_below: float
    tenants: list[str] | None = Field(description="Tenants covered; null means all.")
    matched: int
    archived: int
    deleted: int


class CheckResult(BaseModel):
    ok: bool
    detail: Any = None


class HealthResponse(BaseModel):
    """Liveness: the process answers and reaches its database."""

    status: str
    database: CheckResult


class ReadinessResponse(BaseModel):
    """Readiness: database, schema at head and (optionally) the embedder."""

    status: str
    checks: dict[str, CheckResult]


class EmbeddingQueueResponse(BaseModel):
    """How many messages wait for a vector and how many were given up on."""

    tenant_id: str | None = Field(description="The tenant counted; null means all tenants.")
    pending: int
    failed: int


class RequeueRequest(BaseModel):
    """Which failed messages to queue again (all failed ones when both fields are unset)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = None
    message_ids: list[uuid.UUID] | None = Field(default=None, min_length=1, max_length=10_000)


class RequeueResponse(BaseModel):
    """Failed messages put back in the queue with a fresh attempt budget."""

    requeued: int
