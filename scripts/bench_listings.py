"""Time the conversation listings, the history, GET /v1/messages and the stats on a large tenant.

    python scripts/bench_listings.py [--messages 100000] [--per-conversation 20] [--repeat 7]

Starts a private embedded PostgreSQL in a temporary directory (stopped at the end), fills one
tenant with synthetic messages in SQL, and calls the services as the routes do. Prints a Markdown
table of median and best times; nothing is written to the docs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.conversations import service as conversations
from memory_layer.kit.db.embedded import start_embedded
from memory_layer.kit.db.engine import create_engine, create_sessionmaker
from memory_layer.kit.db.migrations import upgrade_to_head
from memory_layer.kit.pagination import CursorCodec, SortOrder
from memory_layer.messages import service as message_listing
from memory_layer.search.plan import SearchFilters
from memory_layer.stats import service as stats

FILL = """
INSERT INTO messages (tenant_id, id, conversation_id, user_id, role, kind, content, metadata,
                      importance, created_at, embedding_status)
SELECT 'big', gen_random_uuid(), 'conv-' || (g % :conversations),
       'user-' || (g % :conversations % 500),
       CASE WHEN g % 2 = 0 THEN 'user' ELSE 'assistant' END,
       CASE WHEN g % 20 = 0 THEN 'fact' ELSE 'message' END,
       'message number ' || g || ' with some ordinary chat text in it',
       -- one message in 10 tagged travel, one in 5,000 tagged rare
       CASE WHEN g % 5000 = 0 THEN '{"tags": ["rare"]}'::jsonb
            WHEN g % 10 = 0 THEN '{"tags": ["travel"]}'::jsonb ELSE '{}'::jsonb END,
       (g % 100) / 100.0,
       timestamptz '2025-01-01' + g * interval '1 second', 'ready'
FROM generate_series(1, :messages) g
"""


async def main(messages: int, per_conversation: int, repeat: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="memory-layer-bench-"))
    server = start_embedded(workdir)
    try:
        server.ensure_database("bench")
        url = server.url("bench")
        await asyncio.to_thread(upgrade_to_head, url, 384)
        engine = create_engine(url, pool_size=1, max_overflow=0)
        sessionmaker = create_sessionmaker(engine)
        count = max(1, messages // per_conversation)
        async with engine.begin() as connection:
            await connection.execute(text(FILL), {"messages": messages, "conversations": count})
            await connection.execute(text("ANALYZE messages"))
        codec = CursorCodec(None)
        last = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=messages)

        async def timed(label: str, call: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
            times: list[float] = []
            result: Any = None
            for _ in range(repeat):
                async with sessionmaker() as session:
                    started = time.perf_counter()
                    result = await call(session)
                    times.append((time.perf_counter() - started) * 1000)
            print(f"| {label} | {statistics.median(times):.1f} | {min(times):.1f} |")
            return result

        print(f"{messages:,} messages in {count:,} conversations, {repeat} runs each\n")
        print("| call | median ms | best ms |\n|---|---:|---:|")
        first = await timed("conversations, first page of 50", lambda s: conversations.list_conversations(
            s, "big", conversations.ConversationQuery(), cursors=codec))
        await timed("conversations, next page", lambda s: conversations.list_conversations(
            s, "big", conversations.ConversationQuery(cursor=first.next_cursor), cursors=codec))
        await timed("conversations of one user", lambda s: conversations.list_conversations(
            s, "big", conversations.ConversationQuery(user_id="user-7"), cursors=codec))
        await timed("conversations active in the last 5 minutes", lambda s: conversations.list_conversations(
            s, "big", conversations.ConversationQuery(since=last - timedelta(minutes=5)), cursors=codec))
        await timed("one conversation's summary", lambda s: conversations.get_conversation(
            s, "big", "conv-7"))
        await timed("history, first page", lambda s: conversations.list_conversation_messages(
            s, "big", "conv-7", conversations.HistoryQuery(), cursors=codec))
        await timed("history, last 10 turns", lambda s: conversations.list_conversation_messages(
            s, "big", "conv-7", conversations.HistoryQuery(order=SortOrder.desc, limit=10),
            cursors=codec))
        async def listed(session: AsyncSession, **options: Any) -> Any:
            filters = SearchFilters(**options.pop("filters", {}))
            return await message_listing.list_messages(
                session, "big", message_listing.MessageListing(filters=filters, **options), cursors=codec
            )

        top = await timed("messages, first page of 50", lambda s: listed(s))
        await timed("messages, next page", lambda s: listed(s, cursor=top.next_cursor))
        await timed("messages by importance, first page", lambda s: listed(
            s, sort=message_listing.MessageSort.importance))
        await timed("facts of one user", lambda s: listed(
            s, filters={"kind": "fact", "user_id": "user-7"}))
        await timed("messages tagged travel (1 in 10)", lambda s: listed(
            s, filters={"metadata": {"tags": ["travel"]}}))
        await timed("messages tagged rare (1 in 5,000)", lambda s: listed(
            s, filters={"metadata": {"tags": ["rare"]}}))
        async with engine.begin() as connection:
            await connection.execute(text("DROP INDEX ix_messages_metadata"))
        await timed("messages tagged rare, without the GIN index", lambda s: listed(
            s, filters={"metadata": {"tags": ["rare"]}}))
        await timed("stats, whole tenant", lambda s: stats.get_stats(s, "big"))
        await timed("stats, one user", lambda s: stats.get_stats(s, "big", user_id="user-7"))
        await timed("stats, one conversation", lambda s: stats.get_stats(
            s, "big", conversation_id="conv-7"))
        await engine.dispose()
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--per-conversation", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=7)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.messages, arguments.per_conversation, arguments.repeat))
