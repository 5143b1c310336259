"""Alembic environment: async engine, URL and embedding dimension from memory-layer settings."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging.config
import re
from concurrent.futures import ThreadPoolExecutor

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from memory_layer.kit.db.engine import to_async_url
from memory_layer.models import Base

config = context.config
if config.config_file_name is not None and not config.attributes.get("skip_logging_config"):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    # `alembic ...` run by hand: the service's own choice of database (the embedded server is
    # started here and stopped when the process ends), never migrated twice.
    from memory_layer.config import Settings
    from memory_layer.kit.db.database import open_database

    stack = contextlib.ExitStack()
    atexit.register(stack.close)
    return stack.enter_context(open_database(Settings(), migrate=False)).url


# The partitions of `messages` (migration 0008) are the database's business, not the models':
# autogenerate compares the partitioned table itself.
_PARTITION = re.compile(r"messages_p\d{2}")


def _include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    return not (type_ == "table" and reflected and name is not None and _PARTITION.fullmatch(name))


def _do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection, target_metadata=target_metadata, include_object=_include_object
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async_migrations() -> None:
    engine = create_async_engine(to_async_url(_database_url()))
    async with engine.connect() as connection:
        await connection.run_sync(_do_run_migrations)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=to_async_url(_database_url()), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(_run_async_migrations())
    else:
        # Called from async code (an event loop runs in this thread): use a thread of its own.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, _run_async_migrations()).result()
