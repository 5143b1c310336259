"""Schemas of the health routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class CheckResult(BaseModel):
    model_config = ConfigDict(from_attributes=True)

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
