"""How a token budget is shared between the parts of a context (pure arithmetic on token counts).

The rule (docs/api.md, "Context in one call"):
1. The newest turn comes first: whole when it fits in the budget, else cut to the budget.
2. Each part then gets up to its share of the budget, in the order state (20%), summary (15%),
   memories (25%), turns (40%, the newest turn included), never more than what is left.
3. What is left goes to the parts that want more, in the order turns, memories, summary, state.
The state and the summary are cut to their allowance (never below MIN_CUT_TOKENS: then left
out); a memory is kept whole or skipped (a smaller one after it may still fit); turns are kept
whole, newest first, up to the first that does not fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum


class Part(StrEnum):
    state = "state"
    summary = "summary"
    memories = "memories"
    turns = "turns"


SHARES: dict[Part, float] = {
    Part.state: 0.20,
    Part.summary: 0.15,
    Part.memories: 0.25,
    Part.turns: 0.40,
}
SHARE_ORDER = (Part.state, Part.summary, Part.memories, Part.turns)
LEFTOVER_ORDER = (Part.turns, Part.memories, Part.summary, Part.state)
# A state or summary cut shorter than this says too little to be worth its heading.
MIN_CUT_TOKENS = 16


@dataclass(frozen=True)
class Needs:
    """What each part would take whole, in tokens. A list part pays its heading once, with its
    first item."""

    state: int = 0  # 0: no state
    summary: int = 0  # 0: no summary
    memories: list[int] = field(default_factory=list)  # in priority order
    memories_heading: int = 0
    turns: list[int] = field(default_factory=list)  # newest first
    turns_heading: int = 0


@dataclass
class Allocation:
    """What each part was granted: tokens for the state and the summary (below the need: cut;
    0: left out), the indexes of the memories kept, how many of the newest turns are kept, and
    the tokens of the newest turn when it had to be cut (then it is the only turn)."""

    state: int = 0
    summary: int = 0
    memories: list[int] = field(default_factory=list)
    turns: int = 0
    newest_turn_cut: int | None = None

    def used(self, needs: Needs) -> dict[Part, int]:
        """The tokens each part takes under this allocation."""
        memories = sum(needs.memories[i] for i in self.memories)
        if self.memories:
            memories += needs.memories_heading
        if self.newest_turn_cut is not None:
            turns = needs.turns_heading + self.newest_turn_cut
        elif self.turns:
            turns = needs.turns_heading + sum(needs.turns[: self.turns])
        else:
            turns = 0
        return {Part.state: self.state, Part.summary: self.summary, Part.memories: memories,
                Part.turns: turns}


def allocate(budget: int, needs: Needs) -> Allocation:
    """Share `budget` tokens between the parts by the rule of this module."""
    granted = Allocation()
    remaining = max(budget, 0)
    if needs.turns:
        newest = needs.turns_heading + needs.turns[0]
        if newest <= remaining:
            granted.turns = 1
            remaining -= newest
        elif remaining - needs.turns_heading >= 1:
            granted.newest_turn_cut = remaining - needs.turns_heading
            remaining = 0
    for part in SHARE_ORDER:
        share = math.floor(SHARES[part] * budget) - granted.used(needs)[part]
        remaining -= _extend(part, needs, granted, min(share, remaining))
    for part in LEFTOVER_ORDER:
        remaining -= _extend(part, needs, granted, remaining)
    return granted


def _extend(part: Part, needs: Needs, granted: Allocation, limit: int) -> int:
    """Give `part` up to `limit` more tokens; how many it took."""
    if limit <= 0:
        return 0
    if part in (Part.state, Part.summary):
        need = needs.state if part is Part.state else needs.summary
        current = granted.state if part is Part.state else granted.summary
        new = min(need, current + limit)
        if new < need and new < MIN_CUT_TOKENS:
            return 0
        if part is Part.state:
            granted.state = new
        else:
            granted.summary = new
        return new - current
    if part is Part.memories:
        taken = 0
        for index, cost in enumerate(needs.memories):
            if index in granted.memories:
                continue
            cost += needs.memories_heading if not granted.memories else 0
            if taken + cost <= limit:
                granted.memories.append(index)
                taken += cost
        granted.memories.sort()
        return taken
    # Turns: contiguous from the newest; none after a cut newest turn.
    if granted.newest_turn_cut is not None:
        return 0
    taken = 0
    while granted.turns < len(needs.turns):
        cost = needs.turns[granted.turns] + (needs.turns_heading if granted.turns == 0 else 0)
        if taken + cost > limit:
            break
        granted.turns += 1
        taken += cost
    return taken
