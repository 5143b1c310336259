"""The `db_session` test fixture: its commits are savepoints, so nothing leaves the test."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

COUNT = text("SELECT count(*) FROM messages WHERE tenant_id = :t")


async def test_a_commit_in_db_session_is_invisible_to_other_connections(
    db_session: AsyncSession, db_engine: AsyncEngine, tenant: str
) -> None:
    await db_session.execute(
        text(
            "INSERT INTO messages (tenant_id, id, conversation_id, role, content, importance) "
            "VALUES (:t, gen_random_uuid(), 'c', 'user', 'kept inside the test', 0.5)"
        ),
        {"t": tenant},
    )
    await db_session.commit()
    assert (await db_session.execute(COUNT, {"t": tenant})).scalar_one() == 1
    async with db_engine.connect() as other:
        assert (await other.execute(COUNT, {"t": tenant})).scalar_one() == 0
