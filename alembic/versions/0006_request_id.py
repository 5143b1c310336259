"""request id on messages

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

The X-Request-ID of the request that stored a message, so the embedding worker's log lines about
that message carry the same id as the API's access line. Nullable: imported rows and rows stored
before this revision have none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("request_id", sa.String(128), nullable=True))


def downgrade() -> None:
    op.drop_column("messages", "request_id")
