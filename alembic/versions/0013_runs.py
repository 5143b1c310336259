"""runs: flow runs and the JSON outputs of their tasks

Revision ID: 0013
Revises: 0010
Create Date: 2026-12-07

`runs` (primary key `(tenant_id, id)`): flow name, status (pending | running | completed |
failed | cancelled), parameters (jsonb) and their size, created/updated/started/finished times;
indexes for the listings (per tenant, per tenant and flow, newest first).
`run_task_outputs` (primary key `(tenant_id, run_id, task_id)`): one JSON document per task,
with its size; deleted with its run (foreign key, ON DELETE CASCADE).

And `messages.embedding_supplied` (boolean, default false): the client gave the row's vector
(`embedding` on a write); such rows are never embedded again by the worker or `reembed`. Adding
a column with a constant default changes the catalog only: no row is rewritten.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UUID = postgresql.UUID(as_uuid=True)
STAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "messages",
        sa.Column("embedding_supplied", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("id", UUID, nullable=False),
        sa.Column("flow_name", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column(
            "parameters", postgresql.JSONB(), server_default="{}", nullable=False
        ),
        sa.Column("parameters_bytes", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", STAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", STAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("started_at", STAMP, nullable=True),
        sa.Column("finished_at", STAMP, nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_runs"),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'failed', 'cancelled')",
            name="ck_runs_status",
        ),
    )
    op.create_index("ix_runs_tenant_id_created_at_id", "runs", ["tenant_id", "created_at", "id"])
    op.create_index(
        "ix_runs_tenant_id_flow_name_created_at", "runs", ["tenant_id", "flow_name", "created_at"]
    )
    op.create_table(
        "run_task_outputs",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("run_id", UUID, nullable=False),
        sa.Column("task_id", sa.String(128), nullable=False),
        sa.Column("output", postgresql.JSONB(), nullable=False),
        sa.Column("output_bytes", sa.Integer(), nullable=False),
        sa.Column("created_at", STAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", STAMP, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "run_id", "task_id", name="pk_run_task_outputs"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "run_id"],
            ["runs.tenant_id", "runs.id"],
            name="fk_run_task_outputs_tenant_id_runs",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("run_task_outputs")
    op.drop_index("ix_runs_tenant_id_flow_name_created_at", table_name="runs")
    op.drop_index("ix_runs_tenant_id_created_at_id", table_name="runs")
    op.drop_table("runs")
    op.drop_column("messages", "embedding_supplied")
