"""tenant policies and channels announce their changes

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08

Every API process keeps each tenant's policy and channel rules in memory while it LISTENs on
`memory_layer_wakeups` (kit/tenant_config.py): a row-level trigger on `tenant_policies` and on
`channels` sends `config:<tenant_id>` on that channel with every insert, update and delete,
delivered at commit to every listening process, which drops its copy of that tenant's. Changes
made by any client (the admin routes, `memory-layer channels apply`, plain SQL) are seen.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTION = """
CREATE OR REPLACE FUNCTION memory_layer_notify_tenant_config() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('memory_layer_wakeups',
                      'config:' || CASE WHEN TG_OP = 'DELETE' THEN OLD.tenant_id
                                        ELSE NEW.tenant_id END);
    RETURN NULL;
END
$$
"""
TABLES = ("tenant_policies", "channels")


def upgrade() -> None:
    op.execute(FUNCTION)
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER trg_{table}_notify_config AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION memory_layer_notify_tenant_config()"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_notify_config ON {table}")
    op.execute("DROP FUNCTION IF EXISTS memory_layer_notify_tenant_config()")
