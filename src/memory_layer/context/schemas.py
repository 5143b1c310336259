"""Schemas of the context route."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict

from memory_layer.context.service import (
    DEFAULT_BUDGET_TOKENS,
    DEFAULT_MAX_TURNS,
    MAX_BUDGET_TOKENS,
    MAX_TURNS,
)
from memory_layer.kit.schemas import Identifier, JSONBody, NonBlankText, json_integer
from memory_layer.models.message import Kind, Role
from memory_layer.search.plan import SearchMode


class ContextRequest(JSONBody):
    """Which conversation's context, for which query, within how many tokens."""

    tenant_id: Identifier | None = Field(
        default=None, description="Required unless the API key is bound to a tenant."
    )
    conversation_id: Identifier
    user_id: Identifier | None = Field(
        default=None,
        description="Whose long-term memories to search, across their conversations. Default: "
        "the state's user_id, else the one user_id of the last turns; without one, memories are "
        "searched in this conversation only.",
    )
    query: NonBlankText | None = Field(
        default=None,
        max_length=4096,
        description="What the memories must be relevant to. Default: the conversation's newest "
        "user turn; with neither, no memories are searched.",
    )
    budget_tokens: Annotated[
        int, Field(ge=32, le=MAX_BUDGET_TOKENS), Strict(False), BeforeValidator(json_integer)
    ] = Field(
        default=DEFAULT_BUDGET_TOKENS,
        description="The most tokens the answer may take (cl100k_base), counted both on `text` "
        "and on `messages` as a chat-completion request counts them.",
    )
    max_turns: Annotated[
        int, Field(ge=1, le=MAX_TURNS), Strict(False), BeforeValidator(json_integer)
    ] = Field(
        default=DEFAULT_MAX_TURNS,
        description="The most recent turns to consider (fewer are kept when the budget is short).",
    )
    channel: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9_]*$", max_length=50,
        description="Only this channel's turns, summary and memories.",
    )


class ChatMessage(BaseModel):
    """One message of a chat-completion request."""

    role: str = Field(description="system, user or assistant.")
    content: str


class StateRead(BaseModel):
    """The working-memory document as it appears in the context (compact JSON)."""

    content: str
    version: int
    tokens: int
    truncated: bool = Field(description="Cut to its share of the budget (then not valid JSON).")


class SummaryRead(BaseModel):
    """The conversation's newest summary."""

    message_id: uuid.UUID
    content: str
    created_at: datetime
    tokens: int
    truncated: bool


class MemoryRead(BaseModel):
    """A long-term memory relevant to the query."""

    message_id: uuid.UUID
    conversation_id: str
    kind: Kind
    role: Role
    content: str
    created_at: datetime
    score: float = Field(description="Its search score.")
    tokens: int = Field(description="The tokens of its line in the context.")


class MemoriesRead(BaseModel):
    """Facts and preferences first, then other memories, each group by score."""

    items: list[MemoryRead]
    tokens: int
    omitted: int = Field(description="Relevant memories found but left out for the budget.")


class TurnRead(BaseModel):
    """One of the conversation's last turns, verbatim."""

    message_id: uuid.UUID
    role: Role
    content: str
    created_at: datetime
    tokens: int = Field(description="As a chat message (content, role and 3 tokens of framing).")
    truncated: bool = Field(description="Only the newest turn is ever cut, when it alone exceeds "
                            "the budget.")


class TurnsRead(BaseModel):
    """The last turns kept, oldest first."""

    items: list[TurnRead]
    tokens: int
    omitted: int = Field(description="Turns among the last `max_turns` left out for the budget.")


class TokenUsage(BaseModel):
    """How the budget was spent."""

    budget_tokens: int
    total_tokens: int = Field(description="The larger of text_tokens and messages_tokens; never "
                              "above budget_tokens.")
    text_tokens: int
    messages_tokens: int = Field(description="`messages` as a chat-completion request: each "
                                 "content and role, 3 per message and 3 priming the reply.")
    state: int
    summary: int
    memories: int
    turns: int
    tokenizer: str = Field(description="The encoding that counted: cl100k_base.")


class ContextResponse(BaseModel):
    """A prompt context within the budget: its parts, and the same as chat messages and text."""

    conversation_id: str
    user_id: str | None = Field(description="The user whose memories were searched.")
    query: str | None = Field(description="The query the memories were searched for.")
    state: StateRead | None
    summary: SummaryRead | None
    memories: MemoriesRead
    turns: TurnsRead
    messages: list[ChatMessage] = Field(
        description='`[{"role": "system", "content": <state, summary, memories>}, ...turns]`, '
        "ready for a chat-completion API."
    )
    text: str = Field(description="The whole context as one text.")
    usage: TokenUsage
    search_mode: Annotated[SearchMode, Strict(False)] | None = Field(
        description="How memories were searched; null when no query was searched."
    )
    degraded: str | None = Field(
        description="Set when the search fell back to keyword only (the embedding provider failed)."
    )

    model_config = ConfigDict(from_attributes=True)
