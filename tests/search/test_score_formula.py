"""The ranking formula, run as the SQL that search executes (its one definition)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.search.scoring import RECENCY_SQL, SCORED_SQL, ScoreWeights


async def score(
    session: AsyncSession, weights: ScoreWeights, *, relevance: float, importance: float,
    age_hours: float,
) -> dict[str, float]:
    signals = (
        "(SELECT CAST(:relevance AS float8) AS relevance, CAST(:importance AS float8) AS importance, "
        f"{RECENCY_SQL.format(created_at='now() - make_interval(secs => :age * 3600)')} AS recency) s"
    )
    row = (
        await session.execute(
            text(SCORED_SQL.format(source=signals)),
            {"relevance": relevance, "importance": importance, "age": age_hours, **weights.params()},
        )
    ).one()
    return {key: float(value) for key, value in row._mapping.items()}


async def test_parts_add_up_to_a_score_in_unit_range(db_session: AsyncSession) -> None:
    weights = ScoreWeights(relevance=0.7, importance=0.2, recency=0.1, half_life_hours=24)
    row = await score(db_session, weights, relevance=0.8, importance=0.5, age_hours=24)
    assert row["recency"] == pytest.approx(0.5)
    assert row["part_relevance"] == pytest.approx(0.56)
    assert row["part_importance"] == pytest.approx(0.10)
    assert row["part_recency"] == pytest.approx(0.05)
    assert row["score"] == pytest.approx(0.71)
    best = await score(db_session, weights, relevance=1.0, importance=1.0, age_hours=0)
    assert best["score"] == pytest.approx(1.0)


async def test_recency_halves_every_half_life_and_never_exceeds_one(db_session: AsyncSession) -> None:
    weights = ScoreWeights(half_life_hours=24)
    for age, expected in [(0, 1.0), (24, 0.5), (72, 0.125), (-5, 1.0)]:
        row = await score(db_session, weights, relevance=0.0, importance=0.0, age_hours=age)
        assert row["recency"] == pytest.approx(expected, rel=1e-6)


async def test_weights_are_normalised(db_session: AsyncSession) -> None:
    weights = ScoreWeights(relevance=2, importance=1, recency=1, half_life_hours=10)
    row = await score(db_session, weights, relevance=0.0, importance=1.0, age_hours=0)
    assert row["score"] == pytest.approx(0.5)
    zero = ScoreWeights(relevance=0, importance=0, recency=0)
    assert zero.total == 1.0
    assert (await score(db_session, zero, relevance=0.5, importance=0.5, age_hours=1))["score"] == 0.0
