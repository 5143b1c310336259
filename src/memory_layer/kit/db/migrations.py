"""Run Alembic programmatically and check the schema the service is about to use."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from memory_layer.config import Settings
from memory_layer.kit.db.vectors import stored_embedding_dimensions


class SchemaMismatchError(RuntimeError):
    """The database schema disagrees with the settings (dimension, missing migrations)."""


def find_alembic_ini() -> Path:
    """alembic.ini in the working directory, else in the source tree this package came from."""
    candidates = [Path.cwd() / "alembic.ini", Path(__file__).resolve().parents[4] / "alembic.ini"]
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
