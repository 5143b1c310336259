"""tenant policies, usage counters for quotas, message expiry and PII kinds

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

`tenant_policies` holds each tenant's overrides of the MEMORY_* defaults (retention, default
TTL, quotas, rate limit, PII mode). `tenant_usage` counts each tenant's messages and content
bytes; statement-level triggers on `messages` keep it in step in the writing transaction
(one upsert per statement and tenant, whatever the number of rows). `expires_at` ends a
message's life (every read filters it; retention deletes it), `pii_kinds` records the kinds of
personal data found in its content.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One function per event: transition tables hold the statement's rows; a tenant's counter row
# is created on its first message. UPDATE counts only content changes (the worker's updates of
# embedding columns change no byte, so they write nothing).
USAGE_FUNCTIONS = {
    "insert": """
        INSERT INTO tenant_usage (tenant_id, messages, content_bytes)
        SELECT tenant_id, count(*), coalesce(sum(octet_length(content)), 0)
        FROM new_rows GROUP BY tenant_id
        ON CONFLICT (tenant_id) DO UPDATE
        SET messages = tenant_usage.messages + excluded.messages,
            content_bytes = tenant_usage.content_bytes + excluded.content_bytes
    """,
    "delete": """
        UPDATE tenant_usage u
        SET messages = u.messages - d.messages, content_bytes = u.content_bytes - d.content_bytes
        FROM (SELECT tenant_id, count(*) AS messages,
                     coalesce(sum(octet_length(content)), 0) AS content_bytes
              FROM old_rows GROUP BY tenant_id) d
        WHERE u.tenant_id = d.tenant_id
    """,
    "update": """
        UPDATE tenant_usage u
        SET content_bytes = u.content_bytes + d.delta
        FROM (SELECT n.tenant_id, sum(octet_length(n.content) - octet_length(o.content)) AS delta
              FROM new_rows n JOIN old_rows o ON o.tenant_id = n.tenant_id AND o.id = n.id
              GROUP BY n.tenant_id) d
        WHERE u.tenant_id = d.tenant_id AND d.delta <> 0
    """,
}
TRANSITIONS = {
    "insert": "NEW TABLE AS new_rows",
    "delete": "OLD TABLE AS old_rows",
    "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
}


def upgrade() -> None:
    op.add_column("messages", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "messages",
        sa.Column("pii_kinds", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
    )
    op.create_index(
        "ix_messages_expires_at",
        "messages",
        ["expires_at"],
        postgresql_where=sa.text("expires_at IS NOT NULL"),
    )
    op.create_table(
        "tenant_policies",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("archive_after_days", sa.Float(), nullable=True),
        sa.Column("delete_after_days", sa.Float(), nullable=True),
        sa.Column("retention_importance_below", sa.Float(), nullable=True),
        sa.Column(
            "retention_by_kind", postgresql.JSONB(), server_default="{}", nullable=False
        ),
        sa.Column("default_ttl_seconds", sa.BigInteger(), nullable=True),
        sa.Column("max_messages", sa.BigInteger(), nullable=True),
        sa.Column("max_content_bytes", sa.BigInteger(), nullable=True),
        sa.Column("max_state_bytes", sa.BigInteger(), nullable=True),
        sa.Column("rate_limit", sa.String(64), nullable=True),
        sa.Column("pii_mode", sa.String(16), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "pii_mode IN ('off', 'detect', 'redact', 'reject')", name="ck_tenant_policies_pii_mode"
        ),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenant_policies"),
    )
    op.create_table(
        "tenant_usage",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("messages", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("content_bytes", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenant_usage"),
    )
    op.execute(
        "INSERT INTO tenant_usage (tenant_id, messages, content_bytes) "
        "SELECT tenant_id, count(*), coalesce(sum(octet_length(content)), 0) "
        "FROM messages GROUP BY tenant_id"
    )
    for event, body in USAGE_FUNCTIONS.items():
        op.execute(
            f"""
            CREATE FUNCTION memory_layer_usage_{event}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                {body};
                RETURN NULL;
            END;
            $$
            """
        )
        op.execute(
            f"""
            CREATE TRIGGER trg_messages_usage_{event}
            AFTER {event.upper()} ON messages
            REFERENCING {TRANSITIONS[event]}
            FOR EACH STATEMENT EXECUTE FUNCTION memory_layer_usage_{event}()
            """
        )


def downgrade() -> None:
    for event in USAGE_FUNCTIONS:
        op.execute(f"DROP TRIGGER IF EXISTS trg_messages_usage_{event} ON messages")
        op.execute(f"DROP FUNCTION IF EXISTS memory_layer_usage_{event}()")
    op.drop_table("tenant_usage")
    op.drop_table("tenant_policies")
    op.drop_index("ix_messages_expires_at", table_name="messages")
    op.drop_column("messages", "pii_kinds")
    op.drop_column("messages", "expires_at")
