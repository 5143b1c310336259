"""memory kinds on messages, a user index, and the erasure record

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

`kind` says what a stored memory is (a raw turn, or a distilled fact, preference, procedure,
summary or event). `erasures` records each erasure of a user (when, by which key, how many rows),
never the erased content, so an operator can prove it happened.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = "'message', 'fact', 'preference', 'procedure', 'summary', 'event'"


def upgrade() -> None:
    op.add_column(
        "messages", sa.Column("kind", sa.String(16), server_default="message", nullable=False)
    )
    op.create_check_constraint("ck_messages_kind", "messages", f"kind IN ({KINDS})")
    op.create_index("ix_messages_tenant_user", "messages", ["tenant_id", "user_id"])
    op.create_table(
        "erasures",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("principal", sa.String(128), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("counts", postgresql.JSONB(), server_default="{}", nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_erasures"),
    )
    op.create_index("ix_erasures_tenant_user", "erasures", ["tenant_id", "user_id"])


def downgrade() -> None:
    op.drop_index("ix_erasures_tenant_user", table_name="erasures")
    op.drop_table("erasures")
    op.drop_index("ix_messages_tenant_user", table_name="messages")
    op.drop_constraint("ck_messages_kind", "messages", type_="check")
    op.drop_column("messages", "kind")
