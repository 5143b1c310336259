"""Context vectors (MEMORY_CONTEXT_VECTORS): the migration, the worker's and reembed's fill, search.

These tests own the embedding tests' database (tests/embeddings/conftest.py), emptied before each.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from memory_layer.embeddings.reembed import reembed
from memory_layer.embeddings.worker import EmbeddingWorker
from memory_layer.kit.db.engine import create_engine
from memory_layer.kit.db.migrations import alembic_config
from memory_layer.kit.observability.metrics import Metrics
from memory_layer.kit.observability.requests import RequestActivity
from tests.embeddings.queue import CountingProvider, make_worker, worker_settings
from tests.fixtures.app import ADMIN_KEY, make_settings, running_client
from tests.fixtures.database import DatabaseServer
from tests.support.waiting import wait_until

START = datetime(2025, 5, 1, 19, 0, tzinfo=UTC)


async def insert_turns(
    engine: AsyncEngine,
    turns: list[str],
    *,
    conversation: str = "c",
    tenant: str = "t-context",
    kind: str = "message",
) -> None:
    """Pending turns of one conversation, a minute apart, inserted last turn first (the order of
    the conversation is created_at's, not the insert's)."""
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO messages (tenant_id, id, conversation_id, role, kind, content, "
                "importance, created_at) VALUES (:t, :id, :c, 'user', :kind, :content, 0.5, :at)"
            ),
            [
                {"t": tenant, "id": uuid.uuid4(), "c": conversation, "kind": kind,
                 "content": content, "at": START + timedelta(minutes=i)}
                for i, content in reversed(list(enumerate(turns)))
            ],
        )


async def vectors(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with engine.connect() as connection:
        result = await connection.execute(
            text(
                "SELECT content, context_embedding IS NOT NULL AS has_context, "
                "context_embedding = embedding AS context_is_own, embedding_lease_owner "
                "FROM messages"
            )
        )
        return {row.content: row._asdict() for row in result}


async def test_migration_0011_adds_the_context_vector_and_takes_it_away(
    db_server: DatabaseServer,
) -> None:
    url = db_server.create_database("memory_layer_context_migration")
    config = alembic_config(url, 384)
    await asyncio.to_thread(command.upgrade, config, "0010")
    engine = create_engine(url, pool_size=1, max_overflow=0)

    async def catalog() -> tuple[int | None, set[str], set[str]]:
        async with engine.connect() as connection:
            dims = (
                await connection.execute(
                    text(
                        "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'messages'::regclass "
                        "AND attname = 'context_embedding' AND NOT attisdropped"
                    )
                )
            ).scalar_one_or_none()
            indexes = {
                row[0] for row in await connection.execute(
                    text("SELECT indexname FROM pg_indexes WHERE tablename = 'messages'")
                )
            }
            triggers = {
                row[0] for row in await connection.execute(
                    text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'messages'::regclass")
                )
            }
        return dims, indexes, triggers

    try:
        await asyncio.to_thread(command.upgrade, config, "0011")
        dims, indexes, triggers = await catalog()
        assert dims == 384  # the dimension of `embedding`
        assert {"ix_messages_context_embedding_hnsw", "ix_messages_context_pending"} <= indexes
        assert "trg_messages_notify_context_insert" in triggers
        await asyncio.to_thread(command.downgrade, config, "0010")
        dims, indexes, triggers = await catalog()
        assert dims is None
        assert not {i for i in indexes if "context" in i}
        assert "trg_messages_notify_context_insert" not in triggers
        await asyncio.to_thread(command.upgrade, config, "head")
        assert (await catalog())[0] == 384
    finally:
        await engine.dispose()


async def test_worker_embeds_each_turn_with_the_turn_before_it(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], worker_database_url: str
) -> None:
    await insert_turns(engine, ["Did you ever make it to Tbilisi?", "Yes, last May!", "Nice."])
    await insert_turns(engine, ["Another chat starts here."], conversation="other")
    await insert_turns(engine, ["The user likes Tbilisi."], kind="fact")
    settings = worker_settings(worker_database_url, context_vectors="max")
    provider = CountingProvider()
    worker = make_worker(engine, sessionmaker, provider, settings)
    await worker.drain()
    assert worker.context_enabled
    assert await worker.fill_context() == 4  # every turn; the fact needs none

    # The previous turn of the same conversation, by created_at; a first turn sends no text.
    context_calls = {t for t in provider.calls if "\n" in t}
    assert context_calls == {
        "Did you ever make it to Tbilisi?\nYes, last May!",
        "Yes, last May!\nNice.",
    }
    rows = await vectors(engine)
    assert all(rows[t]["has_context"] for t in rows if t != "The user likes Tbilisi.")
    assert not rows["The user likes Tbilisi."]["has_context"]
    # A first turn's context vector is its own vector; a reply's is not.
    assert rows["Did you ever make it to Tbilisi?"]["context_is_own"]
    assert rows["Another chat starts here."]["context_is_own"]
    assert not rows["Yes, last May!"]["context_is_own"]
    assert all(row["embedding_lease_owner"] is None for row in rows.values())
    assert await worker.fill_context() == 0


async def test_context_vectors_off_computes_none(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], worker_database_url: str
) -> None:
    await insert_turns(engine, ["first", "second"])
    provider = CountingProvider()
    settings = worker_settings(worker_database_url, context_vectors="off")
    report = await reembed(engine, sessionmaker, provider, settings)
    assert (report.embedded, report.context_filled, report.context_pending) == (2, 0, 2)
    assert set(provider.calls) == {"first", "second"}


async def test_reembed_fills_context_vectors_of_stored_turns_and_resumes(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], worker_database_url: str
) -> None:
    """Turns embedded while context vectors were off get theirs from `reembed`; a run stopped
    after one batch leaves the rest to the next run."""
    turns = [f"turn number {i}" for i in range(40)]
    await insert_turns(engine, turns)
    off = worker_settings(worker_database_url, context_vectors="off")
    await make_worker(engine, sessionmaker, CountingProvider(), off).drain()

    on = worker_settings(worker_database_url, context_vectors="max")  # batches of 16
    first = CountingProvider()
    interrupted = make_worker(engine, sessionmaker, first, on)
    assert await interrupted.fill_context_once() == 16

    provider = CountingProvider()
    report = await reembed(engine, sessionmaker, provider, on)
    assert (report.queued, report.embedded) == (0, 0)  # the turns' own vectors stay
    assert (report.context_filled, report.context_pending) == (24, 0)
    # 39 texts in all (the first turn needs none), none embedded twice.
    assert len(first.calls) + len(provider.calls) == 39
    assert not set(first.calls) & set(provider.calls)
    rows = await vectors(engine)
    assert all(row["has_context"] for row in rows.values())
    again = await reembed(engine, sessionmaker, provider, on)
    assert (again.context_filled, again.context_pending) == (0, 0)


async def test_a_new_model_clears_context_vectors_and_reembed_fills_them(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], worker_database_url: str
) -> None:
    await insert_turns(engine, ["a question?", "an answer"])
    on = worker_settings(worker_database_url, context_vectors="max")
    worker = make_worker(engine, sessionmaker, CountingProvider(), on)
    await worker.drain()
    await worker.fill_context()
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE messages SET embedding_model = 'retired-model'"))
    report = await reembed(engine, sessionmaker, CountingProvider(), on)
    assert (report.queued, report.embedded, report.context_filled) == (2, 2, 2)
    assert all(row["has_context"] for row in (await vectors(engine)).values())


async def test_inline_messages_get_context_vectors_from_the_serving_worker(
    engine: AsyncEngine, worker_database_url: str
) -> None:
    """Stored through the API with inline embedding (ready at once), the turns wake the worker
    of `serve`, which gives them context vectors; the admin queue route counts what is left."""
    settings = make_settings(
        worker_database_url, worker_enabled=True, context_vectors="max",
        context_vectors_idle_ms=300,
    )
    async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
        for content in ("Did you ever make it to Tbilisi?", "Yes, last May!"):
            response = await client.post(
                "/v1/messages",
                json={"tenant_id": "t-inline", "conversation_id": "c", "role": "user",
                      "content": content},
            )
            assert response.status_code in (200, 201), response.text
            assert response.json()["embedding_status"] == "ready"

        async def filled() -> bool:  # read in the database: a request would keep it busy
            return bool((await vectors(engine))["Yes, last May!"]["has_context"])

        await wait_until(filled, message="the serving worker never filled the context vectors")
        queue = await client.get("/v1/admin/embeddings", params={"tenant_id": "t-inline"})
        assert queue.json()["context_pending"] == 0
    rows = await vectors(engine)
    assert rows["Yes, last May!"]["has_context"]
    assert not rows["Yes, last May!"]["context_is_own"]

    off = make_settings(worker_database_url, context_vectors="off")
    async with running_client(off, headers={"X-API-Key": ADMIN_KEY}) as client:
        queue = await client.get("/v1/admin/embeddings", params={"tenant_id": "t-inline"})
        assert queue.json()["context_pending"] is None


async def test_search_compares_the_query_with_the_context_vector(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], worker_database_url: str
) -> None:
    """A short reply shares no word with a question about it; its context vector holds the turn
    it answers. With context vectors the reply is found (exactly and through the HNSW graphs);
    off, the same stored rows do not find it."""
    turns = [
        "Did you ever make it to Tbilisi in Georgia?",
        "Yes, last May! The food alone was worth it.",
        "My cousin adopted a beagle puppy.",
        "We repainted the kitchen a pale green colour.",
        "The office moved to a bigger floor downtown.",
        "I started running twice a week before work.",
    ]
    await insert_turns(engine, turns, tenant="t-search")
    on = worker_settings(worker_database_url, context_vectors="max")
    worker = make_worker(engine, sessionmaker, CountingProvider(), on)
    await worker.drain()
    await worker.fill_context()

    async def rank_of_reply(**overrides: Any) -> tuple[int | None, float | None]:
        settings = make_settings(
            worker_database_url, search_answer_expansion=False, search_session_boost=0.0,
            **overrides,
        )
        async with running_client(settings, headers={"X-API-Key": ADMIN_KEY}) as client:
            response = await client.post(
                "/v1/memory/search",
                json={"tenant_id": "t-search", "query": "Has she been to Tbilisi in Georgia",
                      "mode": "vector", "top_k": 3},
            )
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        for rank, item in enumerate(items):
            if item["content"] == turns[1]:
                return rank, item["similarity"]
        return None, None

    for exact_rows in (2_000, 0):  # the exact comparison, then both HNSW graphs
        off_rank, _ = await rank_of_reply(context_vectors="off", search_exact_max_rows=exact_rows)
        assert off_rank is None or off_rank > 1
        max_rank, max_similarity = await rank_of_reply(
            context_vectors="max", search_exact_max_rows=exact_rows
        )
        assert max_rank is not None
        assert max_rank <= 1
        mean_rank, mean_similarity = await rank_of_reply(
            context_vectors="mean", search_exact_max_rows=exact_rows
        )
        assert mean_rank is not None
        assert mean_similarity is not None
        assert max_similarity is not None
        assert mean_similarity < max_similarity


async def test_a_refused_text_keeps_its_own_vector_and_an_outage_waits(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], worker_database_url: str
) -> None:
    """A context text the provider refuses gets the turn's own vector (it is never retried); an
    unavailable provider leaves the turns to a later batch."""
    await insert_turns(engine, ["a greeting", "POISON reply", "a closing line"])
    on = worker_settings(worker_database_url, context_vectors="max", worker_lease_seconds=0.2)
    await make_worker(engine, sessionmaker, CountingProvider(), on).drain()

    down = make_worker(engine, sessionmaker, CountingProvider(poison="a", kind="unavailable"), on)
    assert await down.fill_context_once() == 0
    assert not any(row["has_context"] for row in (await vectors(engine)).values())

    refusing = make_worker(engine, sessionmaker, CountingProvider(poison="POISON"), on)

    async def filled() -> bool:
        await refusing.fill_context()  # the outage's leases run out after 0.2 s
        return all(row["has_context"] for row in (await vectors(engine)).values())

    await wait_until(filled, message="the refused text never got its own vector")
    rows = await vectors(engine)
    # "a greeting\nPOISON reply" and "POISON reply\na closing line" were refused.
    assert rows["POISON reply"]["context_is_own"]
    assert rows["a closing line"]["context_is_own"]
    assert rows["a greeting"]["context_is_own"]  # the first turn


async def test_sealed_turns_and_client_vectors_keep_their_own_vector(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], worker_database_url: str
) -> None:
    """A turn of an encrypted channel (its content column empty) and a turn after it have no
    readable previous turn, and a vector the client supplied was made by another model: each
    keeps its own vector as its context vector; a turn after a client-vector turn reads it."""
    await insert_turns(engine, ["Where did you go?", "A client-embedded reply", "Lovely."])
    await insert_turns(engine, ["sealed", "After the sealed turn"], conversation="sealed")
    settings = worker_settings(worker_database_url, context_vectors="max")
    provider = CountingProvider()
    worker = make_worker(engine, sessionmaker, provider, settings)
    await worker.drain()
    async with engine.begin() as connection:
        await connection.execute(text(
            "UPDATE messages SET embedding_supplied = true WHERE content = 'A client-embedded reply'"
        ))
        await connection.execute(text(
            "UPDATE messages SET encryption_key_id = 'k1', ciphertext = '\\x01'::bytea "
            "WHERE content = 'sealed'"
        ))
    assert await worker.fill_context() == 5
    context_calls = {t for t in provider.calls if "\n" in t}
    assert context_calls == {"A client-embedded reply\nLovely."}
    rows = await vectors(engine)
    assert rows["A client-embedded reply"]["context_is_own"]
    assert rows["sealed"]["context_is_own"]
    assert rows["After the sealed turn"]["context_is_own"]
    assert not rows["Lovely."]["context_is_own"]


async def test_the_serving_worker_fills_context_vectors_only_once_requests_stop(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], worker_database_url: str
) -> None:
    """Context vectors wait until the process has served no request for
    MEMORY_CONTEXT_VECTORS_IDLE_MS; a worker without requests to yield to fills at once."""
    now = [100.0]
    activity = RequestActivity(clock=lambda: now[0])
    settings = worker_settings(worker_database_url, context_vectors="max")
    assert settings.context_vectors_idle_ms == 1_000
    worker = EmbeddingWorker(
        engine, sessionmaker, CountingProvider(), settings, Metrics(), activity=activity
    )
    activity.begin()
    now[0] += 5
    assert not worker.context_due()  # a request in flight
    activity.end()
    now[0] += 0.5
    assert not worker.context_due()
    assert 0.4 < worker._seconds_until_idle() <= 0.5
    now[0] += 0.5
    assert worker._seconds_until_idle() == float("inf")  # due: the poll interval governs
    now[0] -= 0.5
    now[0] += 0.5
    assert worker.context_due()
    assert make_worker(engine, sessionmaker, CountingProvider(), settings).context_due()
    immediate = worker_settings(
        worker_database_url, context_vectors="max", context_vectors_idle_ms=0
    )
    activity.begin()
    assert EmbeddingWorker(
        engine, sessionmaker, CountingProvider(), immediate, Metrics(), activity=activity
    ).context_due()
    off = worker_settings(worker_database_url, context_vectors="off")
    assert not EmbeddingWorker(
        engine, sessionmaker, CountingProvider(), off, Metrics(), activity=RequestActivity()
    ).context_due()

    # A trickle of requests (a client polling a status route) delays them, never stops them:
    # put off for MEMORY_CONTEXT_VECTORS_MAX_DEFER_SECONDS, they are filled until none is missing.
    bounded = worker_settings(
        worker_database_url, context_vectors="max", context_vectors_max_defer_seconds=30
    )
    busy = EmbeddingWorker(
        engine, sessionmaker, CountingProvider(), bounded, Metrics(), activity=activity
    )
    assert not busy.context_due()  # put off from now
    for _ in range(29):
        activity.end()
        now[0] += 0.9  # never a quiet second
        activity.begin()
        assert not busy.context_due()
    now[0] += 4
    assert busy.context_due()  # overdue
    busy.context_gate.drained()
    assert not busy.context_due()  # the next work waits again
