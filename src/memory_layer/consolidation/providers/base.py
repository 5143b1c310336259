"""What every language provider implements, and the plain values that cross it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable


class LanguageError(RuntimeError):
    """The provider could not answer (remote error, timeout, unreadable answer).

    `kind` as for embeddings (rate_limited, unavailable, timeout, auth, bad_response, model);
    provider-wide kinds (rate_limited, unavailable) give the worker's attempt back. Nothing is lost
    either way: the turns stay queued and are tried again after a back-off.
    """

    def __init__(self, message: str, *, kind: str = "model", retryable: bool = True) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


@dataclass(frozen=True)
class Turn:
    """One conversation turn as a provider sees it."""

    id: uuid.UUID
    role: str
    content: str
    created_at: datetime
    importance: float = 0.5
    user_id: str | None = None
    embedding: list[float] | None = None


@dataclass(frozen=True)
class FactDraft:
    """A fact or preference found in a turn: a short third-person statement.

    `subject` names what it is about (`residence`, `name`, `opinion:coffee`): two current facts of a
    user never share one, so a new value for a subject supersedes the old. None: the statement
    stands alone (deduplicated by its text and vector only).
    """

    statement: str
    kind: str = "fact"  # fact | preference
    subject: str | None = None
    value: str | None = None
    confidence: float = 0.8


@dataclass(frozen=True)
class KnownFact:
    """A current fact of the user, a candidate a new one is reconciled against."""

    id: uuid.UUID
    statement: str
    kind: str
    subject: str | None
    value: str | None
    created_at: datetime
    similarity: float | None = None


class Action(StrEnum):
    add = "add"  # a new fact
    update = "update"  # replaces (supersedes) `target`
    none = "none"  # already known: store nothing


@dataclass(frozen=True)
class Decision:
    action: Action
    target: uuid.UUID | None = None


@runtime_checkable
class LanguageProvider(Protocol):
    """Distils turns into facts and summaries."""

    @property
    def name(self) -> str: ...

    @property
    def uses_model(self) -> bool:
        """True for LLM providers: they decide on search candidates and roll summaries forward."""
        ...

    async def extract(self, turn: Turn) -> list[FactDraft]:
        """Facts and preferences the user states in this turn (none for most turns)."""
        ...

    async def decide(self, draft: FactDraft, candidates: list[KnownFact]) -> Decision | None:
        """Add, update (which candidate) or none; None leaves the decision to the rules."""
        ...

    async def summarize(self, previous: str | None, turns: list[Turn], limit: int) -> str:
        """A summary of the conversation: the previous summary followed by `turns`."""
        ...

    async def close(self) -> None: ...
