"""Schemas of the run routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from memory_layer.kit.pagination import SortOrder
from memory_layer.kit.schemas import (
    NON_BLANK_PATTERN,
    CursorPage,
    Identifier,
    JSONBody,
    Metadata,
    Timestamp,
)
from memory_layer.models.run import RunStatus

TENANT_DESCRIPTION = "Required unless the API key is bound to a tenant."
FlowName = Annotated[
    str,
    Field(min_length=1, max_length=128, pattern=NON_BLANK_PATTERN, examples=["nightly-digest"]),
]
# Statuses are read from JSON strings (a StrEnum in a strict body needs Strict(False)).
StatusField = Annotated[RunStatus, Strict(False)]


def _ordered(started_at: datetime | None, finished_at: datetime | None) -> None:
    if started_at is not None and finished_at is not None and finished_at < started_at:
        raise ValueError("finished_at must not be before started_at")


class RunCreate(JSONBody):
    """A new run of a flow."""

    tenant_id: Identifier | None = Field(default=None, description=TENANT_DESCRIPTION)
    flow_name: FlowName
    status: StatusField = Field(
        default=RunStatus.pending,
        description="pending, running, completed, failed or cancelled (the last three are final).",
    )
    parameters: Metadata = Field(
        default_factory=dict,
        description="The run's parameters: a JSON object of at most MEMORY_MAX_METADATA_BYTES.",
    )
    started_at: Timestamp | None = Field(
        default=None, description="Default: now when the status is running or final, else null."
    )
    finished_at: Timestamp | None = Field(
        default=None, description="Only with a final status; default: now when the status is final."
    )

    @model_validator(mode="after")
    def _times(self) -> RunCreate:
        _ordered(self.started_at, self.finished_at)
        return self


class RunPatch(JSONBody):
    """A run's new status (and, optionally, its times)."""

    status: StatusField = Field(
        description="pending -> running -> completed | failed | cancelled; a final status is "
        "never left (409 invalid_transition); the current status again changes nothing."
    )
    started_at: Timestamp | None = Field(
        default=None, description="Default when the run starts: now (kept if already set)."
    )
    finished_at: Timestamp | None = Field(
        default=None, description="Only with a final status; default: now."
    )

    @model_validator(mode="after")
    def _times(self) -> RunPatch:
        _ordered(self.started_at, self.finished_at)
        return self


class RunScopeRequest(BaseModel):
    """Whose run (query string)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = Field(default=None, description=TENANT_DESCRIPTION)


class RunListRequest(BaseModel):
    """Which runs to list (query string)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = Field(default=None, description=TENANT_DESCRIPTION)
    flow_name: FlowName | None = Field(default=None, description="Only runs of this flow.")
    status: RunStatus | None = Field(default=None, description="Only runs in this status.")
    since: Timestamp | None = Field(
        default=None, description="Only runs created at or after this time."
    )
    until: Timestamp | None = Field(
        default=None, description="Only runs created before this time."
    )
    order: SortOrder = Field(
        default=SortOrder.desc, description="By creation time: desc (newest first) or asc."
    )
    limit: int = Field(default=50, ge=1, le=1000, description="Items per page.")
    cursor: str | None = Field(
        default=None,
        description="`next_cursor` of the previous page, unchanged; only valid for the same "
        "tenant, order and filters (else `400 invalid_cursor`).",
    )

    @model_validator(mode="after")
    def _window(self) -> RunListRequest:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError("since must not be after until")
        return self


class RunRead(BaseModel):
    """A run."""

    model_config = ConfigDict(from_attributes=True)

    run_id: uuid.UUID
    flow_name: str
    status: RunStatus
    parameters: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None = Field(description="Set when the run reaches a final status.")


class RunListResponse(CursorPage[RunRead]):
    """One page of a tenant's runs."""


class TaskOutputPut(JSONBody):
    """A task's output."""

    output: Any = Field(
        description="Any JSON value, at most MEMORY_MAX_TASK_OUTPUT_BYTES as compact UTF-8 JSON "
        "(else 413 output_too_large); no NUL (\\u0000) anywhere in it."
    )


class TaskOutputRead(BaseModel):
    """A task's stored output."""

    model_config = ConfigDict(from_attributes=True)

    run_id: uuid.UUID
    task_id: str
    output: Any
    output_bytes: int = Field(description="Size as compact UTF-8 JSON.")
    created_at: datetime
    updated_at: datetime = Field(description="When the output last changed.")
