"""Flow runs and the JSON outputs of their tasks (runs/): an agent framework's run history."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from memory_layer.models.base import Base


class RunStatus(StrEnum):
    """Where a run is: pending -> running -> completed | failed | cancelled (terminal)."""

    pending = "pending"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL_STATUSES = frozenset({RunStatus.completed, RunStatus.failed, RunStatus.cancelled})
RUN_STATUS_CHECK = "status IN ('pending', 'running', 'completed', 'failed', 'cancelled')"


class Run(Base):
    """One run of a flow: its status, parameters and times."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(RUN_STATUS_CHECK, name="status"),
        # The listings: newest first per tenant, or per tenant and flow.
        Index("ix_runs_tenant_id_created_at_id", "tenant_id", "created_at", "id"),
        Index("ix_runs_tenant_id_flow_name_created_at", "tenant_id", "flow_name", "created_at"),
    )

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    flow_name: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    # Compact UTF-8 JSON size of `parameters` (counted against the tenant's bytes quota).
    parameters_bytes: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set when the run reaches a terminal status (by the client, or the server's time then).
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RunTaskOutput(Base):
    """The JSON output of one task of a run; deleted with its run."""

    __tablename__ = "run_task_outputs"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "run_id"], ["runs.tenant_id", "runs.id"], ondelete="CASCADE"
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    output: Mapped[Any] = mapped_column(JSONB)
    output_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
