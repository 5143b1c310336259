"""Run Alembic programmatically and check the schema the service is about to use."""

from __future__ import annotations

import atexit
import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from memory_layer.config import Settings


class SchemaMismatchError(RuntimeError):
    """The database schema disagrees with the settings (dimension, missing migrations)."""


def find_alembic_ini() -> Path:
    """alembic.ini in the working directory, else in the source tree this package came from."""
    candidates = [Path.cwd() / "alembic.ini", Path(__file__).resolve().parents[3] / "alembic.ini"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "alembic.ini not found; run from the project directory (or the container's /app)."
    )


def alembic_config(database_url: str, embedding_dimensions: int) -> Config:
    config = Config(str(find_alembic_ini()))
    config.attributes["database_url"] = database_url
    config.attributes["embedding_dimensions"] = embedding_dimensions
    config.attributes["skip_logging_config"] = True
    return config


def upgrade_to_head(database_url: str, embedding_dimensions: int) -> None:
    try:
        command.upgrade(alembic_config(database_url, embedding_dimensions), "head")
    except DBAPIError as exc:
        if 'extension "vector"' in str(exc):
            raise SchemaMismatchError(
                "The database has no pgvector extension available. Install pgvector (0.8 or "
                "newer) on that PostgreSQL server, or unset MEMORY_DATABASE_URL to use the "
                "embedded PostgreSQL, which ships it."
            ) from exc
        raise


def downgrade_to_base(database_url: str, embedding_dimensions: int) -> None:
    command.downgrade(alembic_config(database_url, embedding_dimensions), "base")


@functools.cache
def head_revision() -> str | None:
    """The newest migration this build ships (read from disk once; readiness asks often)."""
    script = ScriptDirectory.from_config(Config(str(find_alembic_ini())))
    return script.get_current_head()


async def current_revision(connection: AsyncConnection) -> str | None:
    def _current(sync_connection: object) -> str | None:
        context = MigrationContext.configure(sync_connection)  # type: ignore[arg-type]
        return context.get_current_revision()

    return await connection.run_sync(_current)


async def stored_embedding_dimensions(connection: AsyncConnection) -> int | None:
    """The N of the `messages.embedding vector(N)` column, or None before the first migration."""
    result = await connection.execute(
        text(
            "SELECT a.atttypmod FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass('messages') AND a.attname = 'embedding' "
            "AND NOT a.attisdropped"
        )
    )
    value = result.scalar_one_or_none()
    return int(value) if value is not None and value > 0 else None


async def verify_schema(connection: AsyncConnection, settings: Settings) -> None:
    """Stop start-up with an actionable message when migrations or the dimension are off."""
    current = await current_revision(connection)
    head = head_revision()
    if current != head:
        raise SchemaMismatchError(
            f"Database schema is at revision {current!r}, the service needs {head!r}. "
            "Run `memory-layer migrate` (or `alembic upgrade head`)."
        )
    stored = await stored_embedding_dimensions(connection)
    if stored is not None and stored != settings.embedding_dimensions:
        raise SchemaMismatchError(
            f"MEMORY_EMBEDDING_DIMENSIONS={settings.embedding_dimensions} but the database stores "
            f"vector({stored}) embeddings. Either set MEMORY_EMBEDDING_DIMENSIONS={stored} (and a "
            "provider that produces it), or change the column's dimension with `memory-layer "
            "reembed --change-dimension` (docs/operations.md, \"Changing the embedding "
            "dimension\"); the service never rewrites stored vectors on its own."
        )


def resolve_database_url(settings: Settings) -> str:
    """MEMORY_DATABASE_URL when set; otherwise start the embedded server and use its database.

    Used by `alembic upgrade head` run by hand; the server started here stops when the process ends.
    """
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    from memory_layer.db.embedded import start_embedded

    embedded = start_embedded(settings.data_dir)
    embedded.ensure_database()
    atexit.register(embedded.stop)
    return embedded.url()


HNSW_INDEX_SQL = (
    "CREATE INDEX ix_messages_embedding_hnsw ON messages USING hnsw (embedding vector_cosine_ops) "
    "WITH (m = 16, ef_construction = 64)"
)


async def change_embedding_dimension(connection: AsyncConnection, dimensions: int) -> int:
    """Make the column `vector(dimensions)` and queue every message for a new vector.

    One transaction: the HNSW index is dropped, the column retyped with every vector cleared (they
    belong to the old model), every message set pending, the index rebuilt on the empty column.
    Message texts are untouched, so the worker (or `memory-layer reembed`) rebuilds every vector;
    meanwhile keyword search still finds everything. Returns the number of messages queued.
    """
    await connection.execute(text("DROP INDEX IF EXISTS ix_messages_embedding_hnsw"))
    await connection.execute(
        text(f"ALTER TABLE messages ALTER COLUMN embedding TYPE vector({int(dimensions)}) USING NULL")
    )
    result = await connection.execute(
        text(
            "UPDATE messages SET embedding_status = 'pending', embedding_model = NULL, "
            "embedding_attempts = 0, embedding_error = NULL, embedding_next_attempt_at = now(), "
            "embedding_lease_owner = NULL, embedding_lease_expires_at = NULL, embedded_at = NULL"
        )
    )
    await connection.execute(text(HNSW_INDEX_SQL))
    return int(result.rowcount)
