"""The context for a conversation's next model call, within a token budget, in one call.

Working memory (the state document), the newest summary, the user's long-term memories relevant
to the query (through the search service, so its rules on expiry, archiving and validity apply)
and the last turns verbatim, shared out by context/budget.py and rendered twice: as chat messages
(`[{"role": "system", ...}, ...turns]`) and as one text. Token counts are cl100k_base's
(kit/tokens.py).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.config import Settings
from memory_layer.context import budget
from memory_layer.context.budget import Allocation, Needs
from memory_layer.context.repository import ContextRepository, StoredMessage, Window
from memory_layer.embeddings.providers.base import EmbeddingProvider
from memory_layer.kit import tokens
from memory_layer.kit.cache import SearchCache, TenantSizes
from memory_layer.kit.observability.metrics import Metrics
from memory_layer.models.message import Kind, Role
from memory_layer.search import service as search
from memory_layer.search.plan import ScoredRow, SearchFilters, SearchMode

DEFAULT_BUDGET_TOKENS = 2_000
MAX_BUDGET_TOKENS = 1_000_000
DEFAULT_MAX_TURNS = 20
MAX_TURNS = 200
# The search route's own limit on a query; a longer last turn is searched by its beginning.
MAX_QUERY_CHARS = 4_096

# Long-term memories: facts and preferences first, then every other kind.
FIRST_KINDS = (Kind.fact.value, Kind.preference.value)
OTHER_KINDS = tuple(kind.value for kind in Kind if kind.value not in FIRST_KINDS)

STATE_HEADING = "## Working memory\n"
SUMMARY_HEADING = "## Conversation summary\n"
MEMORIES_HEADING = "## Relevant memories\n"
TURNS_HEADING = "## Recent turns\n"
SECTION_SEPARATOR = "\n\n"
# Tokens kept back from the parts for what joins them: the system message's own 3 + role, the
# reply priming, and the separators between sections. The answer is measured once assembled and
# trimmed if these were not enough (they nearly always are).
FRAMING_TOKENS = 10
# Chat APIs accept a `tool` message only in answer to a tool call of the same request: a tool
# turn is sent as a system message that says what it is.
TOOL_PREFIX = "Tool output: "
# Beyond this many characters of candidates (about 35 ms of counting), the context is assembled
# in a worker thread.
INLINE_CHARACTERS = 50_000


@dataclass(frozen=True)
class StatePart:
    """The working-memory document as compact JSON (cut when its share was smaller)."""

    content: str
    version: int
    tokens: int
    truncated: bool


@dataclass(frozen=True)
class SummaryPart:
    """The conversation's newest `summary` message (cut when its share was smaller)."""

    message_id: uuid.UUID
    content: str
    created_at: datetime
    tokens: int
    truncated: bool


@dataclass(frozen=True)
class MemoryItem:
    """A long-term memory kept in the context, with its search score and its line's tokens."""

    message_id: uuid.UUID
    conversation_id: str
    kind: str
    role: str
    content: str
    created_at: datetime
    score: float
    tokens: int


@dataclass(frozen=True)
class TurnItem:
    """One of the last turns, verbatim (only the newest may be cut, when it alone exceeds the
    budget); `tokens` as a chat message."""

    message_id: uuid.UUID
    role: str
    content: str
    created_at: datetime
    tokens: int
    truncated: bool


@dataclass(frozen=True)
class Context:
    """A budgeted prompt context: its parts, each with its tokens, and the same as chat messages
    and as one text. `total_tokens` is the larger of the text's and the messages' (as a
    chat-completion request counts them), never above `budget_tokens`."""

    conversation_id: str
    user_id: str | None
    query: str | None
    budget_tokens: int
    state: StatePart | None
    summary: SummaryPart | None
    memories: list[MemoryItem]
    memories_tokens: int
    memories_omitted: int
    turns: list[TurnItem]  # chronological
    turns_tokens: int
    turns_omitted: int
    messages: list[dict[str, str]]
    text: str
    text_tokens: int
    messages_tokens: int
    total_tokens: int
    search_mode: SearchMode | None = None
    degraded: str | None = None
    tokenizer: str = tokens.ENCODING
    parts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Candidates:
    """Everything that could go into the context, whole, with what each would cost."""

    window: Window
    state_body: str | None
    memories: list[ScoredRow]
    memory_lines: list[str]
    turn_messages: list[tuple[str, str]]  # (role, content) as chat messages, newest first
    needs: Needs


async def build_context(
    session: AsyncSession,
    tenant_id: str,
    conversation_id: str,
    *,
    user_id: str | None = None,
    query: str | None = None,
    budget_tokens: int = DEFAULT_BUDGET_TOKENS,
    max_turns: int = DEFAULT_MAX_TURNS,
    settings: Settings,
    embedder: EmbeddingProvider,
    metrics: Metrics,
    tenant_sizes: TenantSizes | None = None,
    cache: SearchCache | None = None,
    channel: str | None = None,
) -> Context:
    """The context for the conversation's next model call, within `budget_tokens`.

    `user_id` defaults to the state's user, else to the one user of the last turns; without one,
    the memories are searched in this conversation only. `query` defaults to the newest user
    turn; with neither, no memories are searched.
    """
    window = await ContextRepository(session).window(
        tenant_id, conversation_id, max_turns=max_turns, with_last_user_turn=query is None,
        channel=channel,
    )
    user = user_id or _conversation_user(window)
    query_text = query if query is not None else _last_user_turn(window)
    rows: list[ScoredRow] = []
    mode: SearchMode | None = None
    degraded: str | None = None
    if query_text is not None and query_text.strip():
        query_text = query_text[:MAX_QUERY_CHARS]
        filters = SearchFilters(user_id=user) if user else SearchFilters(conversation_id=conversation_id)
        filters = replace(filters, channel=channel)
        top_k = min(50, max(5, budget_tokens // 100))
        for kinds in (FIRST_KINDS, OTHER_KINDS):
            outcome = await search.search_memory(
                session,
                tenant_id,
                search.SearchQuery(text=query_text, top_k=top_k, filters=replace(filters, kinds=kinds)),
                settings=settings,
                embedder=embedder,
                metrics=metrics,
                tenant_sizes=tenant_sizes,
                cache=cache,
            )
            rows += outcome.rows
            mode = outcome.mode
            degraded = degraded or outcome.degraded
    if _characters(window, rows) > INLINE_CHARACTERS:
        # Counting takes about 0.7 µs a character: a long window is counted off the event loop.
        context = await asyncio.to_thread(assemble, window, rows, conversation_id, budget_tokens)
    else:
        context = assemble(window, rows, conversation_id, budget_tokens)
    return replace(context, user_id=user, query=query_text, search_mode=mode, degraded=degraded)


def assemble(
    window: Window, rows: list[ScoredRow], conversation_id: str, budget_tokens: int
) -> Context:
    """The context of a conversation's window and the search's hits, within `budget_tokens`:
    shared out by context/budget.py, then measured as sent and trimmed until it fits."""
    candidates = _candidates(window, _unseen(rows, window, conversation_id))
    allocation = budget.allocate(budget_tokens - FRAMING_TOKENS, candidates.needs)
    while True:
        context = _render(candidates, allocation, conversation_id, budget_tokens)
        over = context.total_tokens - budget_tokens
        if over <= 0:
            return context
        _shrink(allocation, candidates.needs, over)


def _characters(window: Window, rows: list[ScoredRow]) -> int:
    found = sum(len(turn.content) for turn in window.turns) + sum(len(row.content) for row in rows)
    return found + (len(window.summary.content) if window.summary is not None else 0)


def _conversation_user(window: Window) -> str | None:
    if window.state is not None and window.state.user_id:
        return window.state.user_id
    users = {turn.user_id for turn in window.turns if turn.user_id}
    return users.pop() if len(users) == 1 else None


def _last_user_turn(window: Window) -> str | None:
    for turn in window.turns:  # newest first
        if turn.role == Role.user.value:
            return turn.content
    return window.last_user_turn.content if window.last_user_turn is not None else None


def _unseen(rows: list[ScoredRow], window: Window, conversation_id: str) -> list[ScoredRow]:
    """The search's hits minus what the context holds otherwise: the last turns (all of those
    fetched, kept or not), this conversation's summaries, and repeats; facts and preferences
    first, each group in the order given (by score)."""
    seen = {turn.id for turn in window.turns}
    if window.summary is not None:
        seen.add(window.summary.id)
    kept: list[ScoredRow] = []
    for row in rows:
        if row.id in seen:
            continue
        if row.kind == Kind.summary.value and row.conversation_id == conversation_id:
            continue
        seen.add(row.id)
        kept.append(row)
    return sorted(kept, key=lambda row: row.kind not in FIRST_KINDS)


def _memory_line(row: ScoredRow) -> str:
    return f"- [{row.kind}, {row.created_at:%Y-%m-%d}] {row.content}"


def _chat_turn(turn: StoredMessage) -> tuple[str, str]:
    if turn.role == Role.tool.value:
        return Role.system.value, TOOL_PREFIX + turn.content
    return turn.role, turn.content


def _candidates(window: Window, rows: list[ScoredRow]) -> _Candidates:
    state_body = None
    if window.state is not None:
        state_body = json.dumps(window.state.document, ensure_ascii=False, separators=(",", ":"))
    lines = [_memory_line(row) for row in rows]
    turn_messages = [_chat_turn(turn) for turn in window.turns]
    needs = Needs(
        state=tokens.count(STATE_HEADING + state_body) if state_body is not None else 0,
        summary=tokens.count(SUMMARY_HEADING + window.summary.content)
        if window.summary is not None else 0,
        # + 1: the newline that joins a line to the next.
        memories=[tokens.count(line) + 1 for line in lines],
        memories_heading=tokens.count(MEMORIES_HEADING),
        turns=[tokens.chat_message(role, content) for role, content in turn_messages],
        turns_heading=tokens.count(TURNS_HEADING),
    )
    return _Candidates(window, state_body, rows, lines, turn_messages, needs)


def _cut(heading: str, body: str, granted: int, need: int) -> tuple[str, bool]:
    if granted >= need:
        return body, False
    return tokens.truncate(body, granted - tokens.count(heading)), True


def _render(
    candidates: _Candidates, allocation: Allocation, conversation_id: str, budget_tokens: int
) -> Context:
    window, needs = candidates.window, candidates.needs
    sections: list[str] = []
    parts: dict[str, int] = {}
    state = None
    if window.state is not None and candidates.state_body is not None and allocation.state > 0:
        body, cut = _cut(STATE_HEADING, candidates.state_body, allocation.state, needs.state)
        if body:
            section = STATE_HEADING + body
            state = StatePart(body, window.state.version, tokens.count(section), cut)
            sections.append(section)
    summary = None
    if window.summary is not None and allocation.summary > 0:
        body, cut = _cut(SUMMARY_HEADING, window.summary.content, allocation.summary, needs.summary)
        if body:
            section = SUMMARY_HEADING + body
            summary = SummaryPart(
                window.summary.id, body, window.summary.created_at, tokens.count(section), cut
            )
            sections.append(section)
    memories = [_memory_item(candidates.memories[i], needs.memories[i]) for i in allocation.memories]
    memories_tokens = 0
    if memories:
        section = MEMORIES_HEADING + "\n".join(candidates.memory_lines[i] for i in allocation.memories)
        memories_tokens = tokens.count(section)
        sections.append(section)
    system_content = SECTION_SEPARATOR.join(sections)
    turns = _turns(candidates, allocation)
    messages = [{"role": Role.system.value, "content": system_content}] if system_content else []
    messages += [{"role": role, "content": content} for role, content, _, _ in turns]
    turn_items = [
        TurnItem(stored.id, stored.role, content if stored.role != Role.tool.value
                 else content.removeprefix(TOOL_PREFIX), stored.created_at, cost, cut)
        for (_, content, cut, cost), stored in zip(
            turns, reversed(window.turns[: len(turns)]), strict=True
        )
    ]
    if turn_items:
        sections.append(TURNS_HEADING + "\n".join(f"{t.role}: {t.content}" for t in turn_items))
    text = SECTION_SEPARATOR.join(sections)
    text_tokens = tokens.count(text)
    # As tokens.chat(messages) counts them, from counts already made.
    messages_tokens = 0
    if messages:
        messages_tokens = tokens.REPLY_PRIMING_TOKENS + sum(turn.tokens for turn in turn_items)
        if system_content:
            messages_tokens += tokens.chat_message(Role.system.value, system_content)
    parts = {
        "state": state.tokens if state else 0,
        "summary": summary.tokens if summary else 0,
        "memories": memories_tokens,
        "turns": sum(turn.tokens for turn in turn_items),
    }
    return Context(
        conversation_id=conversation_id,
        user_id=None,
        query=None,
        budget_tokens=budget_tokens,
        state=state,
        summary=summary,
        memories=memories,
        memories_tokens=memories_tokens,
        memories_omitted=len(candidates.memories) - len(memories),
        turns=turn_items,
        turns_tokens=parts["turns"],
        turns_omitted=len(window.turns) - len(turn_items),
        messages=messages,
        text=text,
        text_tokens=text_tokens,
        messages_tokens=messages_tokens,
        total_tokens=max(text_tokens, messages_tokens),
        parts=parts,
    )


def _memory_item(row: ScoredRow, cost: int) -> MemoryItem:
    return MemoryItem(
        message_id=row.id, conversation_id=row.conversation_id, kind=row.kind, role=row.role,
        content=row.content, created_at=row.created_at, score=row.score, tokens=cost,
    )


def _turns(candidates: _Candidates, allocation: Allocation) -> list[tuple[str, str, bool, int]]:
    """The kept turns as (role, content, cut, tokens) chat messages, oldest first."""
    if allocation.newest_turn_cut is not None:
        role, content = candidates.turn_messages[0]
        room = allocation.newest_turn_cut - tokens.chat_message(role, "")
        cut = tokens.truncate(content, room) if room > 0 else ""
        return [(role, cut, True, tokens.chat_message(role, cut))] if cut else []
    kept = zip(candidates.turn_messages[: allocation.turns], candidates.needs.turns, strict=False)
    return [(role, content, False, cost) for (role, content), cost in reversed(list(kept))]


def _shrink(allocation: Allocation, needs: Needs, over: int) -> None:
    """Take `over` tokens (at least) from the allocation, least needed first: the oldest kept
    turn, the last memory, the summary, the state, then the newest turn."""
    if allocation.newest_turn_cut is None and allocation.turns > 1:
        allocation.turns -= 1
    elif allocation.memories:
        allocation.memories.pop()
    elif allocation.summary > 0:
        allocation.summary = _less(allocation.summary, over)
    elif allocation.state > 0:
        allocation.state = _less(allocation.state, over)
    elif allocation.turns == 1 or allocation.newest_turn_cut is not None:
        # The newest turn alone is left: it is cut (it is never cut shorter than it must be).
        granted = needs.turns[0] if allocation.turns == 1 else allocation.newest_turn_cut
        assert granted is not None
        allocation.turns = 0
        allocation.newest_turn_cut = granted - over if granted - over > 0 else None
    else:  # pragma: no cover - an empty answer takes no tokens
        raise AssertionError("nothing left to shrink")


def _less(granted: int, over: int) -> int:
    reduced = granted - over
    return reduced if reduced >= budget.MIN_CUT_TOKENS else 0
