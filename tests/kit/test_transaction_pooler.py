"""MEMORY_DB_TRANSACTION_POOLER: the engine PgBouncer's transaction mode needs, against real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text

from memory_layer.config import Settings
from memory_layer.kit.db.engine import create_engine, search_settings_problems
from tests.fixtures.app import ADMIN_KEY, running_client


async def statement_names(url: str, *, transaction_pooler: bool) -> set[str]:
    engine = create_engine(url, pool_size=1, max_overflow=0, transaction_pooler=transaction_pooler)
    try:
        async with engine.begin() as connection:
            for _ in range(2):
                await connection.execute(text("SELECT count(*) FROM messages WHERE tenant_id = :t"),
                                         {"t": "nobody"})
            names = await connection.execute(text("SELECT name FROM pg_prepared_statements"))
            return {row.name for row in names}
    finally:
        await engine.dispose()


async def test_pooler_mode_names_statements_uniquely(database_url: str) -> None:
    # asyncpg's own names repeat on every connection (__asyncpg_stmt_1__, ...): two clients that
    # share a server connection through the pooler would collide.
    assert all(name.startswith("__asyncpg_stmt_") for name in await statement_names(
        database_url, transaction_pooler=False
    ))
    pooled = await statement_names(database_url, transaction_pooler=True)
    assert pooled
    assert all(name.startswith("__memory_layer_") for name in pooled)


async def test_pooler_mode_leaves_search_settings_to_the_database(database_url: str) -> None:
    direct = create_engine(database_url, pool_size=1, max_overflow=0, hnsw_ef_search=100)
    pooled = create_engine(database_url, pool_size=1, max_overflow=0, transaction_pooler=True)
    try:
        assert await search_settings_problems(direct, 100) == []
        # No startup parameters (PgBouncer refuses unknown ones): the test database has no
        # ALTER DATABASE ... SET, so both settings are reported.
        problems = await search_settings_problems(pooled, 100)
    finally:
        await direct.dispose()
        await pooled.dispose()
    assert len(problems) == 2
    assert "hnsw.iterative_scan" in problems[1]
    assert "ALTER DATABASE" in problems[1]


async def test_the_service_works_in_pooler_mode(
    settings_factory: Callable[..., Settings], tenant: str
) -> None:
    settings = settings_factory(db_transaction_pooler=True)
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        created = await client.post(
            "/v1/messages",
            json={"tenant_id": tenant, "conversation_id": "c", "role": "user", "content": "pooled"},
        )
        found = await client.get("/v1/memory/search", params={"tenant_id": tenant, "query": "pooled"})
    assert created.status_code == 200
    assert [item["message_id"] for item in found.json()["items"]] == [created.json()["message_id"]]
