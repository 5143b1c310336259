"""Re-embedding: every row moves to the current model, and a dimension change loses no message."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from memory_layer.embeddings.reembed import reembed
from memory_layer.kit.db.engine import create_engine, create_sessionmaker
from memory_layer.kit.db.migrations import upgrade_to_head
from memory_layer.kit.db.vectors import stored_embedding_dimensions
from tests.embeddings.queue import CountingProvider, insert_pending, make_worker, statuses, worker_settings
from tests.fixtures.database import DatabaseServer


async def test_reembed_moves_every_row_to_the_current_model(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], worker_database_url: str
) -> None:
    await insert_pending(engine, [f"old vector {i}" for i in range(30)])
    # The turns' own vectors only (tests/embeddings/test_context_vectors.py: context vectors).
    settings = worker_settings(worker_database_url, context_vectors="off")
    await make_worker(engine, sessionmaker, CountingProvider(), settings).drain()
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE messages SET embedding_model = 'retired-model'"))

    provider = CountingProvider()
    progress: list[int] = []
    report = await reembed(
        engine, sessionmaker, provider, settings, chunk_size=7, on_progress=progress.append
    )
    assert (report.queued, report.embedded, report.pending, report.failed) == (30, 30, 0, 0)
    assert sum(progress) == 30
    rows = await statuses(engine)
    assert {r["embedding_model"] for r in rows.values()} == {"fake-hash-384"}
    assert len(provider.calls) == 30
    again = await reembed(engine, sessionmaker, provider, settings)
    assert (again.queued, again.embedded) == (0, 0)


async def test_changing_the_dimension_is_refused_unless_asked_and_then_loses_no_message(
    db_server: DatabaseServer,
) -> None:
    from memory_layer.kit.errors import InvalidInput

    url = db_server.create_database("memory_layer_dimension_test")
    upgrade_to_head(url, 8)
    engine = create_engine(url, pool_size=2, max_overflow=2)
    sessionmaker = create_sessionmaker(engine)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO messages (tenant_id, id, conversation_id, role, content, "
                    "importance, embedding, embedding_model, embedding_status) "
                    "SELECT 't', gen_random_uuid(), 'c', 'user', 'eight dims ' || g, 0.5, "
                    "CAST('[1,0,0,0,0,0,0,0]' AS vector), 'tiny-model', 'ready' "
                    "FROM generate_series(1, 25) AS g"
                )
            )
        settings = worker_settings(url)  # 384 dimensions
        with pytest.raises(InvalidInput, match="--change-dimension"):
            await reembed(engine, sessionmaker, CountingProvider(), settings)
        report = await reembed(
            engine, sessionmaker, CountingProvider(), settings, change_dimension=True
        )
        assert report.dimension_changed_from == 8
        assert (report.queued, report.embedded, report.pending) == (25, 25, 0)
        async with engine.connect() as connection:
            assert await stored_embedding_dimensions(connection) == 384
            row = (
                await connection.execute(
                    text("SELECT count(*) AS n, min(vector_dims(embedding)) AS dims, "
                         "count(*) FILTER (WHERE embedding_status = 'ready') AS ready "
                         "FROM messages")
                )
            ).one()
        assert (row.n, row.dims, row.ready) == (25, 384, 25)
    finally:
        await engine.dispose()
