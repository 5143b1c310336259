"""Migrations run from empty to head and back, and the dimension guard stops a mismatched start."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from memory_layer.kit.db.engine import create_engine
from memory_layer.kit.db.migrations import (
    SchemaMismatchError,
    downgrade_to_base,
    upgrade_to_head,
    verify_schema,
)
from tests.conftest import DatabaseServer, make_settings


async def table_names(url: str) -> set[str]:
    engine = create_engine(url, pool_size=1, max_overflow=0)
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        names = {row[0] for row in result}
    await engine.dispose()
    return names


async def index_definitions(url: str) -> dict[str, str]:
    engine = create_engine(url, pool_size=1, max_overflow=0)
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'messages'")
        )
        definitions = {row[0]: row[1] for row in result}
    await engine.dispose()
    return definitions


@pytest.fixture(scope="module")
def scratch_url(db_server: DatabaseServer) -> str:
    return db_server.create_database("memory_layer_migrations")


async def test_upgrade_downgrade_upgrade(scratch_url: str) -> None:
    import asyncio

    await asyncio.to_thread(upgrade_to_head, scratch_url, 384)
    assert {"messages", "api_keys", "alembic_version"} <= await table_names(scratch_url)
    indexes = await index_definitions(scratch_url)
    assert "USING hnsw (embedding vector_cosine_ops)" in indexes["ix_messages_embedding_hnsw"]
    assert "USING gin (content_tsv)" in indexes["ix_messages_content_tsv"]
    assert "(tenant_id, conversation_id, created_at)" in indexes[
        "ix_messages_tenant_conversation_created"
    ]

    await asyncio.to_thread(downgrade_to_base, scratch_url, 384)
    assert await table_names(scratch_url) == {"alembic_version"}

    await asyncio.to_thread(upgrade_to_head, scratch_url, 384)
    assert {"messages", "api_keys"} <= await table_names(scratch_url)


async def test_dimension_mismatch_stops_start_up_with_a_fix(db_server: DatabaseServer) -> None:
    import asyncio

    url = db_server.create_database("memory_layer_dims")
    await asyncio.to_thread(upgrade_to_head, url, 8)
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            with pytest.raises(SchemaMismatchError) as caught:
                await verify_schema(connection, make_settings(url, embedding_dimensions=384))
            await verify_schema(connection, make_settings(url, embedding_dimensions=8))
    finally:
        await engine.dispose()
    message = str(caught.value)
    assert "MEMORY_EMBEDDING_DIMENSIONS=384" in message
    assert "vector(8)" in message
    assert "MEMORY_EMBEDDING_DIMENSIONS=8" in message


async def test_unmigrated_database_is_refused(db_server: DatabaseServer) -> None:
    url = db_server.create_database("memory_layer_empty")
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            with pytest.raises(SchemaMismatchError, match="memory-layer migrate"):
                await verify_schema(connection, make_settings(url))
    finally:
        await engine.dispose()
