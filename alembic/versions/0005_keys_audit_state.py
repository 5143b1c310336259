"""scoped API keys, the append-only audit log, and conversation state

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

API keys get scopes (`read`, `write`, `admin`), an optional expiry, and may be bound to no tenant
(an operator's stored key); the keys stored so far were all tenant-bound and keep the rights they
had: read and write. Keys are looked up by their hash before any tenant is known, so `api_keys`
is keyed by id alone (a reference table, replicated to every node once the data is sharded).

`audit_events` records who did what (never content). A trigger refuses UPDATE, DELETE and
TRUNCATE; the only deletion it lets through is the retention of the log itself: rows older than
the number of days the transaction declares in `memory.audit_retention_days` (at least 1).

`conversation_states` holds one JSON document per conversation (an agent's working memory), with
a version for optimistic concurrency and an optional expiry.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCOPES = "scopes <@ ARRAY['read', 'write', 'admin']::varchar[] AND cardinality(scopes) >= 1"
ADMIN_UNBOUND = "tenant_id IS NULL OR NOT ('admin' = ANY (scopes))"

APPEND_ONLY_FUNCTION = """
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    horizon_days integer;
BEGIN
    IF TG_OP = 'DELETE' THEN
        -- The log's own retention declares its horizon for this transaction only (SET LOCAL);
        -- rows younger than it, or than a day, are never deleted.
        horizon_days := nullif(current_setting('memory.audit_retention_days', true), '')::integer;
        IF horizon_days IS NOT NULL AND horizon_days >= 1
           AND OLD.occurred_at < now() - make_interval(days => horizon_days) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""
APPEND_ONLY_TRIGGERS = (
    """CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()""",
    """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()""",
)


def upgrade() -> None:
    op.drop_constraint("pk_api_keys", "api_keys", type_="primary")
    op.create_primary_key("pk_api_keys", "api_keys", ["id"])
    op.alter_column("api_keys", "tenant_id", existing_type=sa.String(128), nullable=True)
    # Every key stored so far was tenant-bound with read and write rights: it keeps them.
    op.add_column(
        "api_keys",
        sa.Column(
            "scopes",
            postgresql.ARRAY(sa.String(16)),
            server_default=sa.text("ARRAY['read', 'write']::varchar[]"),
            nullable=False,
        ),
    )
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint("ck_api_keys_scopes", "api_keys", SCOPES)
    op.create_check_constraint("ck_api_keys_admin_unbound", "api_keys", ADMIN_UNBOUND)
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])

    op.create_table(
        "audit_events",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("key_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("target", sa.String(300), nullable=True),
        sa.Column("counts", postgresql.JSONB(), server_default="{}", nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_occurred_at", "audit_events", ["occurred_at", "id"])
    op.create_index("ix_audit_events_tenant_occurred_at", "audit_events", ["tenant_id", "occurred_at"])
    op.execute(APPEND_ONLY_FUNCTION)
    for statement in APPEND_ONLY_TRIGGERS:
        op.execute(statement)

    op.create_table(
        "conversation_states",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=True),
        sa.Column("document", postgresql.JSONB(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "conversation_id", name="pk_conversation_states"),
    )
    op.create_index("ix_conversation_states_tenant_user", "conversation_states", ["tenant_id", "user_id"])
    op.create_index(
        "ix_conversation_states_expires_at",
        "conversation_states",
        ["expires_at"],
        postgresql_where=sa.text("expires_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_conversation_states_expires_at", table_name="conversation_states")
    op.drop_index("ix_conversation_states_tenant_user", table_name="conversation_states")
    op.drop_table("conversation_states")
    op.execute("DROP TABLE audit_events")
    op.execute("DROP FUNCTION audit_events_append_only()")
    op.drop_index("ix_api_keys_tenant_id", table_name="api_keys")
    op.drop_constraint("ck_api_keys_admin_unbound", "api_keys", type_="check")
    op.drop_constraint("ck_api_keys_scopes", "api_keys", type_="check")
    op.drop_column("api_keys", "expires_at")
    op.drop_column("api_keys", "scopes")
    # Keys bound to no tenant cannot be expressed before this revision.
    op.execute("DELETE FROM api_keys WHERE tenant_id IS NULL")
    op.alter_column("api_keys", "tenant_id", existing_type=sa.String(128), nullable=False)
    op.drop_constraint("pk_api_keys", "api_keys", type_="primary")
    op.create_primary_key("pk_api_keys", "api_keys", ["tenant_id", "id"])
