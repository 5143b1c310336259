"""messages hash-partitioned by tenant

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24

`messages` becomes a table partitioned by HASH (tenant_id) into 16 partitions, `messages_p00` …
`messages_p15`, each with its own copy of every index (its own HNSW graph included). A tenant's
rows all live in one partition, shared with about a sixteenth of the other tenants.

Why: in one shared table a tenant with 1% of the rows is slow to search both ways. Its rows lie
on as many pages as it has rows (an exact search reads them all), and a graph over everyone's
rows hands back about a hundred rows of others for each one of its own (docs/benchmarks.md,
"Table layouts for search at scale": at 1,000,000 rows its 40 candidates took 29 ms through the
shared graph and 12.4 ms exactly, and 4.7 ms through the graph of its partition, recall 0.999).
Every primary and unique key already starts with tenant_id, so each stays a constraint.

The table is rewritten in the migration's transaction: its rows are copied into a new table, which
gets every constraint and index under a pending name, and then the old table is dropped and the
new one takes its name (and its constraints and indexes theirs). Writes to `messages` wait from
the start to the commit (the old table is locked in SHARE mode first, so no row committed during
the copy is left behind); reads go on from the old table until the swap, which renames only.
Every index, constraint and trigger is carried over by its own definition, as the database holds
it, so both directions keep whatever the earlier revisions built. Downgrade copies the rows back
into one plain table.
"""

import re
from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PARTITIONS = 16
TABLE = "messages"
REBUILT = "messages_rebuilt"
# Names of the new table's constraints and indexes while the old table still holds theirs.
PENDING = "_rebuilt"
# pg_get_indexdef: `CREATE [UNIQUE] INDEX name ON [ONLY] schema.messages USING ...`; a
# partitioned table's own index reads `ON ONLY`, and the rebuilt table's must cover its
# partitions (or, downgrading, is on a plain table).
INDEX_DEFINITION = re.compile(
    r"^(CREATE (?:UNIQUE )?INDEX) (\S+) ON (?:ONLY )?((?:\S+\.)?)messages (USING .*)$", re.DOTALL
)

# What the table holds beyond its columns, read from the catalog before it is dropped.
COLUMNS = """
SELECT quote_ident(attname) FROM pg_attribute
WHERE attrelid = 'messages'::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
ORDER BY attnum
"""
CONSTRAINTS = """
SELECT quote_ident(conname), pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = 'messages'::regclass AND contype IN ('p', 'u') ORDER BY contype, conname
"""
INDEXES = """
SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = 'messages'::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
ORDER BY i.relname
"""
TRIGGERS = """
SELECT pg_get_triggerdef(oid) FROM pg_trigger
WHERE tgrelid = 'messages'::regclass AND NOT tgisinternal ORDER BY tgname
"""


def _index_on_rebuilt(name: str, definition: str) -> str:
    """The index's definition, under its pending name, on the rebuilt table."""
    match = INDEX_DEFINITION.match(definition)
    if match is None:  # pragma: no cover - PostgreSQL's own format
        raise RuntimeError(f"unexpected index definition: {definition}")
    create, _, schema, method = match.groups()
    return f"{create} {name}{PENDING} ON {schema}{REBUILT} {method}"


def _rebuild(partitioned: bool) -> None:
    bind = op.get_bind()
    # Writers wait from here to the commit; readers go on reading the old table until it is
    # dropped, after the copy and every index build. Without the lock, a row committed while
    # the rows are copied would stay behind in the table that is dropped.
    op.execute(f"LOCK TABLE {TABLE} IN SHARE MODE")
    columns = ", ".join(row[0] for row in bind.execute(text(COLUMNS)))
    constraints = list(bind.execute(text(CONSTRAINTS)))
    indexes = list(bind.execute(text(INDEXES)))
    triggers = [row[0] for row in bind.execute(text(TRIGGERS))]

    op.execute(
        f"CREATE TABLE {REBUILT} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
        "INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMMENTS)"
        + (" PARTITION BY HASH (tenant_id)" if partitioned else "")
    )
    if partitioned:
        for remainder in range(PARTITIONS):
            op.execute(
                f"CREATE TABLE {TABLE}_p{remainder:02d} PARTITION OF {REBUILT} "
                f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {remainder})"
            )
    # The rows go over before any index or trigger exists: one pass each to build the indexes,
    # and the usage counters and the worker's queue already account for every row.
    op.execute(f"INSERT INTO {REBUILT} ({columns}) SELECT {columns} FROM {TABLE}")
    for name, definition in constraints:
        op.execute(f"ALTER TABLE {REBUILT} ADD CONSTRAINT {name}{PENDING} {definition}")
    for name, definition in indexes:
        op.execute(_index_on_rebuilt(name, definition))
    op.execute(f"ANALYZE {REBUILT}")
    # The swap: from here to the commit, readers wait too (renames and triggers only).
    op.execute(f"DROP TABLE {TABLE}")
    op.execute(f"ALTER TABLE {REBUILT} RENAME TO {TABLE}")
    for name, _ in constraints:
        op.execute(f"ALTER TABLE {TABLE} RENAME CONSTRAINT {name}{PENDING} TO {name}")
    for name, _ in indexes:
        op.execute(f"ALTER INDEX {name}{PENDING} RENAME TO {name}")
    for statement in triggers:
        op.execute(statement)


def upgrade() -> None:
    partitioned = op.get_bind().execute(
        text("SELECT relkind = 'p' FROM pg_class WHERE oid = 'messages'::regclass")
    ).scalar_one()
    if not partitioned:
        _rebuild(partitioned=True)


def downgrade() -> None:
    _rebuild(partitioned=False)
