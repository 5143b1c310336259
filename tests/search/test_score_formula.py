"""The ranking formula, run as the SQL that search executes (its one definition)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from memory_layer.models.message import Kind
from memory_layer.search.scoring import (
    FEEDBACK_SQL,
    FRESH_SINCE_SQL,
    RECENCY_SQL,
    SCORED_SQL,
    ScoreWeights,
)


async def score(
    engine: AsyncEngine, weights: ScoreWeights, *, relevance: float, importance: float,
    age_hours: float, kind: str = "message", used_hours_ago: float | None = None,
    successes: int = 0, failures: int = 0,
) -> dict[str, float]:
    """The formula as search runs it, for one memory `age_hours` old, last used
    `used_hours_ago` (None: never), with these usage outcomes."""
    fresh_since = FRESH_SINCE_SQL.format(
        created_at="now() - make_interval(secs => :age * 3600)",
        last_used_at="now() - make_interval(secs => CAST(:used AS float8) * 3600)",
    )
    recency = RECENCY_SQL.format(created_at=fresh_since, kind="CAST(:kind AS text)")
    feedback = FEEDBACK_SQL.format(successes="CAST(:successes AS int)", failures="CAST(:failures AS int)")
    signals = (
        "(SELECT CAST(:relevance AS float8) AS relevance, CAST(:importance AS float8) AS importance, "
        f"{recency} AS recency, {feedback} AS feedback) s"
    )
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                text(SCORED_SQL.format(source=signals)),
                {"relevance": relevance, "importance": importance, "age": age_hours, "kind": kind,
                 "used": used_hours_ago, "successes": successes, "failures": failures,
                 **weights.params()},
            )
        ).one()
    return {key: float(value) for key, value in row._mapping.items()}


async def test_parts_add_up_to_a_score_in_unit_range(db_engine: AsyncEngine) -> None:
    weights = ScoreWeights(relevance=0.7, importance=0.2, recency=0.1, half_life_hours=24)
    row = await score(db_engine, weights, relevance=0.8, importance=0.5, age_hours=24)
    assert row["recency"] == pytest.approx(0.5)
    assert row["part_relevance"] == pytest.approx(0.56)
    assert row["part_importance"] == pytest.approx(0.10)
    assert row["part_recency"] == pytest.approx(0.05)
    assert row["score"] == pytest.approx(0.71)
    best = await score(db_engine, weights, relevance=1.0, importance=1.0, age_hours=0)
    assert best["score"] == pytest.approx(1.0)


async def test_recency_halves_every_half_life_and_never_exceeds_one(db_engine: AsyncEngine) -> None:
    weights = ScoreWeights(half_life_hours=24)
    for age, expected in [(0, 1.0), (24, 0.5), (72, 0.125), (-5, 1.0)]:
        row = await score(db_engine, weights, relevance=0.0, importance=0.0, age_hours=age)
        assert row["recency"] == pytest.approx(expected, rel=1e-6)


async def test_weights_are_normalised(db_engine: AsyncEngine) -> None:
    weights = ScoreWeights(relevance=2, importance=1, recency=1, half_life_hours=10)
    row = await score(db_engine, weights, relevance=0.0, importance=1.0, age_hours=0)
    assert row["score"] == pytest.approx(0.5)
    zero = ScoreWeights(relevance=0, importance=0, recency=0)
    assert zero.total == 1.0
    assert (await score(db_engine, zero, relevance=0.5, importance=0.5, age_hours=1))["score"] == 0.0


async def test_each_kind_ages_at_its_own_half_life(db_engine: AsyncEngine) -> None:
    weights = ScoreWeights(half_life_hours=24, kind_half_life_hours={"fact": 240, "summary": 48})
    for kind, age, expected in [
        ("fact", 240, 0.5), ("fact", 24, 0.5 ** 0.1), ("summary", 96, 0.25),
        # Kinds without a half-life of their own, and a kind the enum does not know, use the
        # default one.
        ("message", 24, 0.5), ("preference", 48, 0.25), ("no-such-kind", 24, 0.5),
    ]:
        row = await score(db_engine, weights, relevance=0.0, importance=0.0, age_hours=age, kind=kind)
        assert row["recency"] == pytest.approx(expected, rel=1e-6), kind


async def test_a_fact_outranks_equally_similar_equally_old_chit_chat(db_engine: AsyncEngine) -> None:
    # The default settings: facts 4320 h, chit-chat (kind message) 168 h.
    weights = ScoreWeights.from_settings(Settings(_env_file=None))
    assert weights.params()["half_life_fact"] == 4320
    assert weights.params()["half_life_message"] == 168
    fact = await score(db_engine, weights, relevance=0.6, importance=0.5, age_hours=720, kind="fact")
    chat = await score(db_engine, weights, relevance=0.6, importance=0.5, age_hours=720)
    assert fact["recency"] == pytest.approx(0.5 ** (720 / 4320), rel=1e-6)
    assert chat["recency"] == pytest.approx(0.5 ** (720 / 168), rel=1e-6)
    # Same relevance and importance: the whole difference is the recency part.
    assert fact["part_relevance"] == chat["part_relevance"]
    assert fact["part_importance"] == chat["part_importance"]
    assert fact["score"] - chat["score"] == pytest.approx(
        0.1 * (0.5 ** (720 / 4320) - 0.5 ** (720 / 168)), rel=1e-6
    )
    assert fact["score"] > chat["score"]


def test_every_kind_has_a_half_life_parameter() -> None:
    params = ScoreWeights(half_life_hours=10, kind_half_life_hours={"event": 5}).params()
    assert {f"half_life_{kind.value}" for kind in Kind} <= params.keys()
    assert params["half_life_event"] == 5
    assert params["half_life_fact"] == params["half_life_hours"] == 10


async def test_procedures_that_keep_failing_rank_below_ones_that_work(db_engine: AsyncEngine) -> None:
    weights = ScoreWeights.from_settings(Settings(_env_file=None))
    assert weights.failure_penalty == 0.5

    def procedure(**usage: int) -> Any:
        return score(db_engine, weights, relevance=0.8, importance=0.5, age_hours=48,
                     kind="procedure", **usage)

    untried = await procedure()
    works = await procedure(successes=5)
    fails = await procedure(failures=5)
    mixed = await procedure(successes=5, failures=1)
    once = await procedure(failures=1)
    # Without failures the score is the formula's own; successes alone do not inflate it.
    assert untried["feedback"] == works["feedback"] == 1.0
    assert works["score"] == untried["score"]
    # 1 - 0.5 * 5 / (0 + 5 + 2); every part shrinks by it, so the parts still add up.
    assert fails["feedback"] == pytest.approx(1 - 0.5 * 5 / 7)
    assert fails["score"] == pytest.approx(untried["score"] * (1 - 0.5 * 5 / 7))
    assert fails["part_relevance"] + fails["part_importance"] + fails["part_recency"] == (
        pytest.approx(fails["score"])
    )
    # One failure among many successes costs little; a first failure costs less than a streak.
    assert works["score"] > mixed["score"] > once["score"] > fails["score"]
    assert mixed["feedback"] == pytest.approx(1 - 0.5 / 8)
    # The order flips a relevance gap: a slightly better match that keeps failing ranks below.
    better_but_failing = await score(db_engine, weights, relevance=0.9, importance=0.5,
                                     age_hours=48, kind="procedure", failures=3)
    assert better_but_failing["score"] < works["score"]
    off = await score(db_engine, ScoreWeights(), relevance=0.8, importance=0.5, age_hours=48,
                      failures=5)
    assert off["feedback"] == 1.0


async def test_a_memory_in_use_stays_fresh(db_engine: AsyncEngine) -> None:
    weights = ScoreWeights(half_life_hours=24, recency_from_last_use=True)
    old_unused = await score(db_engine, weights, relevance=0.5, importance=0.5, age_hours=72)
    old_used = await score(db_engine, weights, relevance=0.5, importance=0.5, age_hours=72,
                           used_hours_ago=24)
    new = await score(db_engine, weights, relevance=0.5, importance=0.5, age_hours=24)
    assert old_unused["recency"] == pytest.approx(0.125)
    # Recency counts from the last use: a three-day-old memory used yesterday is as fresh as
    # one written yesterday.
    assert old_used["recency"] == pytest.approx(0.5)
    assert old_used["score"] == pytest.approx(new["score"])
    assert old_used["score"] > old_unused["score"]
    # A use older than the memory's own time (an import with a later created_at) changes nothing.
    imported = await score(db_engine, weights, relevance=0.5, importance=0.5, age_hours=24,
                           used_hours_ago=72)
    assert imported["recency"] == pytest.approx(0.5)
    # Turned off, only creation counts.
    off = ScoreWeights(half_life_hours=24, recency_from_last_use=False)
    assert (await score(db_engine, off, relevance=0.5, importance=0.5, age_hours=72,
                        used_hours_ago=24))["recency"] == pytest.approx(0.125)
    assert ScoreWeights.from_settings(Settings(_env_file=None)).recency_from_last_use is True
