"""per-conversation message quota, audit level per tenant

Revision ID: 0015
Revises: 0010
Create Date: 2026-12-07

`tenant_policies` gets `max_messages_per_conversation` (NULL: the MEMORY_* default) and
`audit_level` (admin | writes | all). `conversation_usage` counts each conversation's messages
(every kind); statement-level triggers on `messages` keep it in the writing transaction like
`tenant_usage`'s, and are named to fire after those (PostgreSQL fires triggers of one event in
name order): every writer then locks the tenant's usage row before any conversation's, one order
for all, so two writers of a tenant never wait on each other's rows in a cycle. An emptied
conversation's row is deleted with its last message. `audit_events` gets `route`: the
`METHOD /path` of an `api.write` or `api.read` entry.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The rows are upserted in key order: statements of different tenants' writers lock them in the
# same order too.
CONVERSATION_FUNCTIONS = {
    "insert": """
        INSERT INTO conversation_usage (tenant_id, conversation_id, messages)
        SELECT tenant_id, conversation_id, count(*)
        FROM new_rows GROUP BY tenant_id, conversation_id ORDER BY tenant_id, conversation_id
        ON CONFLICT (tenant_id, conversation_id) DO UPDATE
        SET messages = conversation_usage.messages + excluded.messages
    """,
    "delete": """
        UPDATE conversation_usage u SET messages = u.messages - gone.messages
        FROM (SELECT tenant_id, conversation_id, count(*) AS messages
              FROM old_rows GROUP BY tenant_id, conversation_id) gone
        WHERE u.tenant_id = gone.tenant_id AND u.conversation_id = gone.conversation_id;
        DELETE FROM conversation_usage u
        USING (SELECT DISTINCT tenant_id, conversation_id FROM old_rows) gone
        WHERE u.tenant_id = gone.tenant_id AND u.conversation_id = gone.conversation_id
          AND u.messages <= 0
    """,
}
TRANSITIONS = {"insert": "NEW TABLE AS new_rows", "delete": "OLD TABLE AS old_rows"}


def upgrade() -> None:
    op.add_column(
        "tenant_policies", sa.Column("max_messages_per_conversation", sa.BigInteger(), nullable=True)
    )
    op.add_column("tenant_policies", sa.Column("audit_level", sa.String(16), nullable=True))
    op.create_check_constraint(
        "ck_tenant_policies_audit_level",
        "tenant_policies",
        "audit_level IN ('admin', 'writes', 'all')",
    )
    op.add_column("audit_events", sa.Column("route", sa.String(200), nullable=True))
    op.create_table(
        "conversation_usage",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("messages", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "conversation_id", name="pk_conversation_usage"),
    )
    op.execute(
        "INSERT INTO conversation_usage (tenant_id, conversation_id, messages) "
        "SELECT tenant_id, conversation_id, count(*) FROM messages "
        "GROUP BY tenant_id, conversation_id"
    )
    for event, body in CONVERSATION_FUNCTIONS.items():
        op.execute(
            f"""
            CREATE FUNCTION memory_layer_conversation_usage_{event}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                {body};
                RETURN NULL;
            END;
            $$
            """
        )
        # `trg_messages_usage_{event}_conversations` sorts after `trg_messages_usage_{event}`.
        op.execute(
            f"""
            CREATE TRIGGER trg_messages_usage_{event}_conversations
            AFTER {event.upper()} ON messages
            REFERENCING {TRANSITIONS[event]}
            FOR EACH STATEMENT EXECUTE FUNCTION memory_layer_conversation_usage_{event}()
            """
        )


def downgrade() -> None:
    for event in CONVERSATION_FUNCTIONS:
        op.execute(f"DROP TRIGGER IF EXISTS trg_messages_usage_{event}_conversations ON messages")
        op.execute(f"DROP FUNCTION IF EXISTS memory_layer_conversation_usage_{event}()")
    op.drop_table("conversation_usage")
    op.drop_column("audit_events", "route")
    op.drop_constraint("ck_tenant_policies_audit_level", "tenant_policies", type_="check")
    op.drop_column("tenant_policies", "audit_level")
    op.drop_column("tenant_policies", "max_messages_per_conversation")
