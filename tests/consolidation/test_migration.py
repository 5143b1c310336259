"""Migration 0010: rows stored before it are not queued; rows after it are; it goes back down."""

from __future__ import annotations

import asyncio
import uuid

from alembic import command
from sqlalchemy import text

from memory_layer.kit.db.engine import create_engine
from tests.fixtures.database import DatabaseServer
from tests.kit.test_migrations import database_at


async def test_0010_queues_only_new_rows_and_downgrades(db_server: DatabaseServer) -> None:
    url, config = await database_at(db_server, "memory_layer_consolidation_0010", "0008")
    insert = text("INSERT INTO messages (tenant_id, id, conversation_id, role, content, importance) "
                  "VALUES ('t', :id, 'c', 'user', :content, 0.5)")
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as connection:
            await connection.execute(insert, {"id": uuid.uuid4(), "content": "before"})
        await asyncio.to_thread(command.upgrade, config, "0010")
        async with engine.begin() as connection:
            await connection.execute(insert, {"id": uuid.uuid4(), "content": "after"})
            rows: dict[str, str | None] = dict((await connection.execute(text(
                "SELECT content, consolidation_status FROM messages"))).all())
            assert rows == {"before": None, "after": "pending"}
            policy_columns = (await connection.execute(text(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'tenant_policies' AND column_name IN "
                "('extract_facts', 'summarize')"))).scalars().all()
            assert sorted(policy_columns) == ["extract_facts", "summarize"]
        await engine.dispose()
        await asyncio.to_thread(command.downgrade, config, "0008")
        async with engine.connect() as connection:
            columns = (await connection.execute(text(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'messages' "
                "AND column_name LIKE 'consolidation%'"))).scalars().all()
            assert columns == []
            assert (await connection.execute(text("SELECT count(*) FROM messages"))).scalar_one() == 2
    finally:
        await engine.dispose()
