"""Which database a process uses, and whether it migrates it: one rule for serve, worker and CLI.

MEMORY_DATABASE_URL when set, else the embedded PostgreSQL + pgvector under MEMORY_DATA_DIR
(started here and stopped when the block ends). Migrations run when the caller asks
(`memory-layer migrate`), else as MEMORY_AUTO_MIGRATE says, else for the embedded server only:
an external database is the operator's to migrate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from memory_layer.config import Settings
from memory_layer.kit.db.embedded import EmbeddedPostgres, start_embedded
from memory_layer.kit.db.migrations import upgrade_to_head


@dataclass(frozen=True)
class Database:
    url: str
    embedded: EmbeddedPostgres | None

    @property
    def kind(self) -> str:
        return "embedded" if self.embedded is not None else "external"


def should_migrate(settings: Settings, *, embedded: bool, migrate: bool | None) -> bool:
    """`migrate` True or False decides; None applies MEMORY_AUTO_MIGRATE, else embedded-only."""
    if migrate is not None:
        return migrate
    if settings.auto_migrate is not None:
        return settings.auto_migrate
    return embedded


def embedded_parameters(settings: Settings) -> dict[str, str]:
    """The embedded server's parameters: its shared buffers, and autovacuum waking every 10 s
    instead of every minute. Right after a burst of writes PostgreSQL's row estimates for the
    tenant's partition are stale until the next autoanalyze, and with "a handful of rows" the
    planner filters full text through the tenant's btree instead of the GIN index: searches
    took 2-3 times as long for up to a minute after a tenant's first messages
    (docs/benchmarks.md, "Keyword search as a tenant grows")."""
    return {"shared_buffers": settings.embedded_shared_buffers, "autovacuum_naptime": "10s"}


@contextlib.contextmanager
def open_database(settings: Settings, *, migrate: bool | None = None) -> Iterator[Database]:
    """The process's database, migrated per `should_migrate`; an embedded server stops after."""
    embedded: EmbeddedPostgres | None = None
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
    else:
        embedded = start_embedded(settings.data_dir, embedded_parameters(settings))
        embedded.ensure_database()
        url = embedded.url()
    try:
        if should_migrate(settings, embedded=embedded is not None, migrate=migrate):
            upgrade_to_head(url, settings.embedding_dimensions)
        yield Database(url=url, embedded=embedded)
    finally:
        if embedded is not None:
            embedded.stop()


@contextlib.asynccontextmanager
async def open_database_async(
    settings: Settings, *, migrate: bool | None = None
) -> AsyncIterator[Database]:
    """`open_database` for the event loop: starting, migrating and stopping run in a thread."""
    manager = open_database(settings, migrate=migrate)
    database = await asyncio.to_thread(manager.__enter__)
    try:
        yield database
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)
