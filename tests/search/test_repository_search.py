"""The HNSW query against exact search: true nearest neighbours, no tenant leaks, no starvation.

Every test works in `db_session`, which is rolled back at the end: the synthetic rows never stay.
"""

from __future__ import annotations

import dataclasses
import random
import uuid

import numpy as np
import pytest
from numpy.typing import NDArray
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.config import SearchFusion, Settings
from memory_layer.kit.db.vectors import vector_param, walks_graph
from memory_layer.search.plan import ScoredRow, SearchFilters, SearchMode, SearchPlan
from memory_layer.search.repository import SearchRepository, build_search_sql
from memory_layer.search.scoring import ScoreWeights
from memory_layer.search.service import search_exactly, tenant_extent
from tests.fixtures.tenants import new_tenant

DIMS = 384
Vectors = NDArray[np.float64]
SIMILARITY_ONLY = ScoreWeights(relevance=1.0, importance=0.0, recency=0.0)


def unit_vectors(count: int, seed: int) -> Vectors:
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(count, DIMS))
    normalized: Vectors = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return normalized


async def insert_vectors(session: AsyncSession, tenant: str, vectors: Vectors) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(len(vectors))]
    rows = [
        {"t": tenant, "id": ids[i], "e": "[" + ",".join(f"{v:.7f}" for v in vectors[i]) + "]"}
        for i in range(len(vectors))
    ]
    await session.execute(
        text(
            "INSERT INTO messages (tenant_id, id, conversation_id, role, content, importance, "
            "embedding, embedding_model, embedding_status) "
            "VALUES (:t, :id, 'c', 'user', 'synthetic', 0.5, CAST(:e AS vector), 'test', 'ready')"
        ),
        rows,
    )
    return ids


async def force_hnsw(session: AsyncSession) -> None:
    for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
        await session.execute(text(f"SET LOCAL {setting} = off"))


def vector_plan(tenant: str, query: Vectors, top_k: int, *, exact: bool = False) -> SearchPlan:
    return SearchPlan(
        tenant_id=tenant,
        query_text="synthetic",
        query_vector=[float(v) for v in query],
        mode=SearchMode.vector,
        fusion=SearchFusion.weighted,
        model="test",
        limit=top_k,
        candidate_pool=top_k * 4,
        filters=SearchFilters(),
        weights=SIMILARITY_ONLY,
        rrf_k=60,
        keyword_weight=0.5,
        exact=exact,
    )


async def search(
    session: AsyncSession, tenant: str, query: Vectors, top_k: int, *, exact: bool = False
) -> list[ScoredRow]:
    return await SearchRepository(session).search(vector_plan(tenant, query, top_k, exact=exact))


async def test_hnsw_answer_matches_exact_nearest_neighbours(db_session: AsyncSession) -> None:
    tenants = [new_tenant() for _ in range(3)]
    data = {t: unit_vectors(150, seed) for seed, t in enumerate(tenants)}
    ids = {t: await insert_vectors(db_session, t, data[t]) for t in tenants}
    # Force the index path, so this checks the HNSW query and not an exact scan-and-sort
    # (which the planner rightly prefers for tenants this small).
    await force_hnsw(db_session)
    plan = "\n".join(
        row[0]
        for row in await db_session.execute(
            text(
                "EXPLAIN SELECT id FROM messages WHERE tenant_id = :t "
                "ORDER BY embedding <=> CAST(:q AS vector) LIMIT 10"
            ),
            {"t": tenants[0], "q": "[" + ",".join(["0.1"] * DIMS) + "]"},
        )
    )
    assert walks_graph(plan)

    rng = random.Random(7)
    for _ in range(5):
        tenant = rng.choice(tenants)
        query = unit_vectors(1, rng.randrange(10_000))[0]
        exact = np.argsort(-(data[tenant] @ query))[:10]
        rows = await search(db_session, tenant, query, 10)
        assert [str(row.id) for row in rows] == [ids[tenant][i] for i in exact]
        assert {str(row.id) for row in rows} <= set(ids[tenant])
        expected_similarity = float(data[tenant][exact[0]] @ query)
        assert rows[0].similarity == pytest.approx(expected_similarity, abs=1e-4)


async def test_small_tenant_among_many_rows_is_not_starved(db_session: AsyncSession) -> None:
    big, small = new_tenant(), new_tenant()
    await insert_vectors(db_session, big, unit_vectors(1500, 1))
    small_ids = await insert_vectors(db_session, small, unit_vectors(15, 2))
    await force_hnsw(db_session)
    query = unit_vectors(1, 3)[0]
    rows = await search(db_session, small, query, 10)
    assert len(rows) == 10
    assert {str(row.id) for row in rows} <= set(small_ids)


async def test_archived_and_pending_rows_are_not_vector_hits(db_session: AsyncSession) -> None:
    tenant = new_tenant()
    ids = await insert_vectors(db_session, tenant, unit_vectors(3, 4))
    await db_session.execute(
        text("UPDATE messages SET archived_at = now() WHERE tenant_id = :t AND id = :id"),
        {"t": tenant, "id": ids[0]},
    )
    await db_session.execute(
        text("UPDATE messages SET embedding_status = 'pending' WHERE tenant_id = :t AND id = :id"),
        {"t": tenant, "id": ids[1]},
    )
    rows = await search(db_session, tenant, unit_vectors(1, 5)[0], 10)
    assert [str(row.id) for row in rows] == [ids[2]]


async def test_exact_path_compares_every_vector_of_the_tenant(db_session: AsyncSession) -> None:
    big, small = new_tenant(), new_tenant()
    await insert_vectors(db_session, big, unit_vectors(1500, 11))
    small_data = unit_vectors(40, 12)
    small_ids = await insert_vectors(db_session, small, small_data)
    assert await SearchRepository(db_session).tenant_size(small, 100) == 40
    assert await SearchRepository(db_session).tenant_size(big, 100) == 101  # counted up to cap + 1
    await force_hnsw(db_session)  # even where the index would be preferred
    query = unit_vectors(1, 13)[0]
    statement, params = build_search_sql(vector_plan(small, query, 10, exact=True))
    plan = "\n".join(
        row[0]
        for row in await db_session.execute(
            text("EXPLAIN " + statement.text).bindparams(vector_param("query_vector")), params
        )
    )
    assert not walks_graph(plan)
    rows = await search(db_session, small, query, 10, exact=True)
    exact = np.argsort(-(small_data @ query))[:10]
    assert [str(row.id) for row in rows] == [small_ids[i] for i in exact]


async def test_expired_rows_are_no_hits_and_the_index_still_serves(db_session: AsyncSession) -> None:
    big, tenant = new_tenant(), new_tenant()
    await insert_vectors(db_session, big, unit_vectors(1500, 21))
    data = unit_vectors(30, 22)
    ids = await insert_vectors(db_session, tenant, data)
    query = unit_vectors(1, 23)[0]
    nearest = ids[int(np.argmax(data @ query))]
    await db_session.execute(
        text("UPDATE messages SET expires_at = now() - interval '1 second' WHERE id = :id"),
        {"id": nearest},
    )
    await force_hnsw(db_session)
    statement, params = build_search_sql(vector_plan(tenant, query, 10))
    plan = "\n".join(
        row[0]
        for row in await db_session.execute(
            text("EXPLAIN " + statement.text).bindparams(vector_param("query_vector")), params
        )
    )
    assert walks_graph(plan)
    rows = await search(db_session, tenant, query, 10)
    assert len(rows) == 10
    assert nearest not in {str(row.id) for row in rows}


async def partition_count(session: AsyncSession, tenant: str) -> int:
    """The rows of the partition that holds the tenant, counted."""
    return int((await session.execute(
        text(
            "SELECT count(*) FROM messages WHERE tableoid = "
            "(SELECT tableoid FROM messages WHERE tenant_id = :t LIMIT 1)"
        ),
        {"t": tenant},
    )).scalar_one())


async def test_partition_names_the_tenants_partition_and_its_estimate(
    db_session: AsyncSession,
) -> None:
    tenant = new_tenant()
    repository = SearchRepository(db_session)
    assert await repository.partition(tenant) is None  # no messages: no partition to speak of
    await insert_vectors(db_session, tenant, unit_vectors(30, 31))
    await db_session.execute(text("ANALYZE messages"))
    name = (await db_session.execute(
        text("SELECT DISTINCT tableoid::regclass::text FROM messages WHERE tenant_id = :t"),
        {"t": tenant},
    )).scalar_one()
    assert name.startswith("messages_p")
    assert await repository.partition(tenant) == (name, await partition_count(db_session, tenant))


async def test_tenant_extent_counts_as_far_as_the_share_rule_needs(db_session: AsyncSession) -> None:
    tenant = new_tenant()
    await insert_vectors(db_session, tenant, unit_vectors(30, 32))
    await db_session.execute(text("ANALYZE messages"))
    partition = await partition_count(db_session, tenant)
    repository = SearchRepository(db_session)
    found = await repository.partition(tenant)
    assert found is not None

    settings = Settings(_env_file=None, search_exact_max_rows=10, search_exact_min_share=0.0)
    extent = await tenant_extent(repository, tenant, settings)
    assert extent == (11, partition, found[0])  # counted up to cap + 1
    # A share of the partition to tell apart needs the count that far.
    settings = Settings(_env_file=None, search_exact_max_rows=10, search_exact_min_share=1.0)
    assert (await tenant_extent(repository, tenant, settings)).rows == 30
    # A tenant without messages is searched in `messages` itself.
    assert await tenant_extent(repository, new_tenant(), settings) == (0, 0, "messages")


async def test_searching_the_tenants_partition_finds_what_messages_finds(
    db_session: AsyncSession,
) -> None:
    tenants = [new_tenant() for _ in range(4)]
    for seed, tenant in enumerate(tenants):
        await insert_vectors(db_session, tenant, unit_vectors(60, 40 + seed))
    repository = SearchRepository(db_session)
    for tenant in tenants:
        found = await repository.partition(tenant)
        assert found is not None
        query = unit_vectors(1, 50)[0]
        for exact in (False, True):
            plan = vector_plan(tenant, query, 10, exact=exact)
            whole = await repository.search(plan)
            statement, params = build_search_sql(dataclasses.replace(plan, table=found[0]))
            assert f"FROM {found[0]}" in statement.text
            assert "FROM messages\n" not in statement.text
            part = await repository.search(dataclasses.replace(plan, table=found[0]))
            assert [row.id for row in part] == [row.id for row in whole]
            assert len(part) == 10


def test_small_tenants_and_small_shares_of_a_partition_are_searched_exactly() -> None:
    settings = Settings(_env_file=None, search_exact_max_rows=2_000, search_exact_min_share=0.05)
    assert search_exactly(2_000, 1_000_000, settings)  # small
    assert search_exactly(20_000, 1_000_000, settings)  # 2% of its partition
    assert not search_exactly(20_000, 100_000, settings)  # 20%: the graph
    assert not search_exactly(2_001, 0, settings)  # a partition not analyzed yet: the graph
    off = Settings(_env_file=None, search_exact_max_rows=2_000, search_exact_min_share=0.0)
    assert not search_exactly(20_000, 1_000_000, off)
