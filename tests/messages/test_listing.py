"""messages.service.list_messages: a tenant's live messages newest first, by user, conversation
and kinds, a page at a time (the MCP tool list_memories and the user-facts resource)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.kit.db.engine import create_sessionmaker
from memory_layer.kit.pagination import CursorCodec, InvalidCursor
from memory_layer.messages.service import MessageQuery, list_messages
from memory_layer.models.message import Kind
from tests.fixtures.rows import at, insert_rows, message_row
from tests.fixtures.tenants import new_tenant

CURSORS = CursorCodec(SecretStr("listing-test"))


async def listed(engine: AsyncEngine, tenant: str, query: MessageQuery) -> tuple[list[str], str | None]:
    async with create_sessionmaker(engine)() as session:
        page = await list_messages(session, tenant, query, cursors=CURSORS)
    return [message.content for message in page.items], page.next_cursor


async def test_filters_order_and_pages(db_engine: AsyncEngine) -> None:
    tenant, other = new_tenant(), new_tenant()
    await insert_rows(db_engine, [
        message_row(tenant, "c1", at(1), user_id="u", kind="fact", content="fact 1"),
        message_row(tenant, "c1", at(2), user_id="u", kind="message", content="turn 2"),
        message_row(tenant, "c2", at(3), user_id="u", kind="preference", content="pref 3"),
        message_row(tenant, "c2", at(4), user_id="v", kind="fact", content="fact of v"),
        message_row(tenant, "c1", at(5), user_id="u", kind="fact", content="archived fact",
                    archived=True),
        message_row(other, "c1", at(6), user_id="u", kind="fact", content="other tenant's"),
    ])
    facts = MessageQuery(user_id="u", kinds=(Kind.fact, Kind.preference))
    assert (await listed(db_engine, tenant, facts))[0] == ["pref 3", "fact 1"]
    assert (await listed(db_engine, tenant, MessageQuery(conversation_id="c1")))[0] == ["turn 2", "fact 1"]
    with_archived = MessageQuery(user_id="u", kinds=(Kind.fact,), include_archived=True)
    assert (await listed(db_engine, tenant, with_archived))[0] == ["archived fact", "fact 1"]
    assert (await listed(db_engine, other, MessageQuery()))[0] == ["other tenant's"]

    first, cursor = await listed(db_engine, tenant, MessageQuery(limit=2))
    assert first == ["fact of v", "pref 3"]
    assert cursor is not None
    second, cursor = await listed(db_engine, tenant, MessageQuery(limit=2, cursor=cursor))
    assert second == ["turn 2", "fact 1"]
    assert cursor is None

    # A cursor belongs to its listing: another filter, or another tenant, is refused.
    _, cursor = await listed(db_engine, tenant, MessageQuery(limit=1))
    assert cursor is not None
    with pytest.raises(InvalidCursor):
        await listed(db_engine, tenant, MessageQuery(limit=1, cursor=cursor, user_id="u"))
    with pytest.raises(InvalidCursor):
        await listed(db_engine, other, MessageQuery(limit=1, cursor=cursor))
