"""The allocation rule (context/budget.py) by example, and the assembled context's budget as a
property over random conversations and budgets (no database: context.service.assemble)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from memory_layer.context.budget import MIN_CUT_TOKENS, Needs, Part, allocate
from memory_layer.context.repository import StoredMessage, StoredState, Window
from memory_layer.context.service import assemble
from memory_layer.kit import tokens
from memory_layer.search.plan import ScoredRow

# --- the rule, by example --------------------------------------------------------------------


def test_everything_fits_whole() -> None:
    needs = Needs(state=30, summary=40, memories=[10, 20], memories_heading=4, turns=[15, 25],
                  turns_heading=4)
    granted = allocate(1000, needs)
    assert (granted.state, granted.summary, granted.memories, granted.turns) == (30, 40, [0, 1], 2)
    assert granted.newest_turn_cut is None
    assert sum(granted.used(needs).values()) == 30 + 40 + 34 + 44


def test_every_part_wanting_everything_gets_its_share_then_the_leftover_in_order() -> None:
    needs = Needs(state=1000, summary=1000, memories=[100] * 10, turns=[100] * 10)
    granted = allocate(1000, needs)
    # Shares: state 200, summary 150, memories 250 (two whole memories: 200), turns 400 (the
    # newest turn and three more). 50 are left: no turn or memory is that small, so the summary
    # takes them (the state comes after it).
    assert granted.state == 200
    assert granted.summary == 200
    assert granted.memories == [0, 1]
    assert granted.turns == 4
    assert sum(granted.used(needs).values()) == 1000


def test_what_a_part_does_not_need_goes_to_the_turns_first() -> None:
    needs = Needs(state=0, summary=0, memories=[30], turns=[100] * 20)
    granted = allocate(1000, needs)
    assert granted.memories == [0]
    assert granted.turns == 9  # 970 tokens left for turns of 100
    assert granted.used(needs)[Part.turns] == 900


def test_the_leftover_goes_to_memories_before_the_summary_and_the_state() -> None:
    needs = Needs(state=500, summary=500, memories=[50] * 20, turns=[50])
    granted = allocate(1000, needs)
    # Shares: state 200, summary 150, memories 250 (5), turns 50 of 400. 350 left: turns have
    # none to add, memories take 7 more (350), nothing for the summary and the state.
    assert granted.memories == list(range(12))
    assert (granted.state, granted.summary) == (200, 150)


def test_a_memory_that_does_not_fit_is_skipped_for_a_smaller_one() -> None:
    needs = Needs(memories=[80, 300, 20], turns=[])
    granted = allocate(400, needs)  # memories' share: 100, then the leftover
    assert granted.memories == [0, 1, 2]
    granted = allocate(200, needs)  # share 50: none; leftover 200: the first and the third
    assert granted.memories == [0, 2]


def test_the_newest_turn_comes_first_even_past_the_turns_share() -> None:
    needs = Needs(state=300, summary=300, memories=[100], turns=[700, 10])
    granted = allocate(1000, needs)
    assert granted.turns == 1
    # 300 left, given by share in the order state (200), summary (100: its 150 share, capped).
    assert (granted.state, granted.summary, granted.memories) == (200, 100, [])


def test_a_newest_turn_longer_than_the_budget_is_cut_to_it() -> None:
    needs = Needs(state=50, memories=[10], turns=[5000, 10], turns_heading=4)
    granted = allocate(1000, needs)
    assert granted.newest_turn_cut == 996
    assert (granted.turns, granted.state, granted.memories) == (0, 0, [])


def test_the_state_and_summary_are_left_out_rather_than_cut_to_nothing() -> None:
    needs = Needs(state=100, summary=100, turns=[])
    granted = allocate(70, needs)
    # Shares: state 14 and summary 10, both under MIN_CUT_TOKENS; the leftover (70) then goes to
    # the summary before the state.
    assert MIN_CUT_TOKENS > 14
    assert (granted.summary, granted.state) == (70, 0)


def test_turns_stop_at_the_first_that_does_not_fit() -> None:
    needs = Needs(turns=[10, 10, 500, 10])
    assert allocate(100, needs).turns == 2


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    budget=st.integers(0, 5000),
    state=st.integers(0, 3000),
    summary=st.integers(0, 3000),
    memories=st.lists(st.integers(1, 400), max_size=30),
    turns=st.lists(st.integers(5, 800), max_size=30),
    heading=st.integers(0, 6),
)
def test_the_allocation_never_exceeds_the_budget(
    budget: int, state: int, summary: int, memories: list[int], turns: list[int], heading: int
) -> None:
    needs = Needs(state=state, summary=summary, memories=memories, memories_heading=heading,
                  turns=turns, turns_heading=heading)
    granted = allocate(budget, needs)
    assert sum(granted.used(needs).values()) <= budget
    assert 0 <= granted.state <= state
    assert 0 <= granted.summary <= summary
    assert granted.state in (0, state) or granted.state >= MIN_CUT_TOKENS
    assert granted.memories == sorted(set(granted.memories))
    if turns and heading + turns[0] <= budget:
        assert granted.turns >= 1
    if granted.newest_turn_cut is not None:
        assert granted.turns == 0
        assert granted.newest_turn_cut < turns[0]


# --- the assembled context, as a property ----------------------------------------------------

NOW = datetime(2026, 6, 1, tzinfo=UTC)
WORDS = st.sampled_from(
    ["Lisbon", "trip", "I", "prefer", "window", "seats", "peanuts", "🙂", "東京", "naïve", "42",
     "{", "}", "\n", "—", "don't", "co-operate", "<|endoftext|>", "  ", "ok."]
)
TEXTS = st.lists(WORDS, min_size=1, max_size=120).map(" ".join)


def stored(content: str, minutes: int, role: str = "user") -> StoredMessage:
    return StoredMessage(uuid.uuid4(), role, content, NOW - timedelta(minutes=minutes), "ana")


def hit(content: str, kind: str, score: float) -> ScoredRow:
    return ScoredRow(
        id=uuid.uuid4(), conversation_id="elsewhere", user_id="ana", role="user", kind=kind,
        content=content, metadata={}, importance=0.5, created_at=NOW - timedelta(days=3),
        embedding_status="ready", vector_rank=1, similarity=score, keyword_rank=None,
        keyword_score=None, fused=score, relevance=score, recency=1.0, part_relevance=score,
        part_importance=0.1, part_recency=0.1, score=score,
    )


@st.composite
def windows(draw: st.DrawFn) -> tuple[Window, list[ScoredRow]]:
    contents = draw(st.lists(TEXTS, max_size=12))
    roles = draw(st.lists(st.sampled_from(["user", "assistant", "system", "tool"]),
                          min_size=len(contents), max_size=len(contents)))
    turns = [stored(content, minutes, role)
             for minutes, (content, role) in enumerate(zip(contents, roles, strict=True))]
    state = None
    if draw(st.booleans()):
        state = StoredState({"notes": draw(TEXTS), "step": draw(st.integers())}, 3, "ana")
    summary = stored(draw(TEXTS), 100, "system") if draw(st.booleans()) else None
    rows = [hit(draw(TEXTS), draw(st.sampled_from(["fact", "preference", "message", "event"])),
                draw(st.floats(0, 1))) for _ in range(draw(st.integers(0, 10)))]
    # A hit may repeat one of the window's turns: it must not appear twice.
    repeat: bool = draw(st.booleans())
    if turns and repeat:
        turn = turns[-1]
        rows.append(dataclasses.replace(hit(turn.content, "message", 0.9), id=turn.id))
    return Window(state, summary, turns, None), rows


@settings(max_examples=200, deadline=None, derandomize=True)
@given(case=windows(), budget=st.integers(32, 3000))
def test_the_context_never_exceeds_the_budget(
    case: tuple[Window, list[ScoredRow]], budget: int
) -> None:
    window, rows = case
    context = assemble(window, rows, "here", budget)
    assert context.text_tokens == tokens.count(context.text)
    assert context.messages_tokens == tokens.chat(context.messages)
    assert context.total_tokens == max(context.text_tokens, context.messages_tokens) <= budget
    # The turns kept are the newest, oldest first, and none is also a memory.
    kept = [turn.message_id for turn in context.turns]
    assert kept == [turn.id for turn in reversed(window.turns[: len(kept)])]
    assert not set(kept) & {memory.message_id for memory in context.memories}
    assert context.turns_omitted == len(window.turns) - len(kept)
    assert all(not turn.truncated for turn in context.turns[:-1])
    # The chat messages are the system message (when there is one) and the turns.
    turn_messages = context.messages[1:] if context.messages[:1] and (
        context.state or context.summary or context.memories) else context.messages
    assert len(turn_messages) == len(context.turns)
    assert context.turns_tokens == sum(tokens.chat([m]) - 3 for m in turn_messages)
    # Facts and preferences come before other memories.
    first = [memory.kind in ("fact", "preference") for memory in context.memories]
    assert first == sorted(first, reverse=True)


def test_a_long_state_and_summary_are_cut_and_say_so() -> None:
    long = " ".join(f"item {i} of the plan" for i in range(400))
    window = Window(StoredState({"plan": long}, 7, None), stored(long, 50, "system"),
                    [stored("What is next?", 1)], None)
    context = assemble(window, [], "here", 400)
    assert context.state is not None
    assert context.summary is not None
    assert context.state.truncated
    assert context.summary.truncated
    assert context.state.content.endswith("…")
    assert context.summary.content.endswith("…")
    # The turn first, then the shares (state 20%, summary 15% of the 390 tokens left for parts),
    # then the leftover to the summary before the state.
    assert [turn.content for turn in context.turns] == ["What is next?"]
    assert context.state.tokens <= 0.2 * 390 + 1
    assert context.summary.tokens > context.state.tokens
    assert context.total_tokens <= 400
