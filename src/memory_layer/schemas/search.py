"""Schemas of the search routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from memory_layer.models.message import Role
from memory_layer.schemas.common import Identifier


class SearchRequest(BaseModel):
    """What to look for, and where (query string for GET, JSON body for POST)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = Field(
        default=None, description="Required unless the API key is bound to a tenant."
    )
    query: str = Field(min_length=1, max_length=4096)
    top_k: int = Field(default=5, ge=1, le=100)
    conversation_id: Identifier | None = None
    role: Role | None = None
    importance_min: float | None = Field(default=None, ge=0.0, le=1.0)
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain NUL (\\u0000) characters")
        if not value.strip():
            raise ValueError("must contain non-whitespace text")
        return value

    @model_validator(mode="after")
    def _window(self) -> SearchRequest:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError("since must not be after until")
        return self


class ScoreParts(BaseModel):
    """Weighted contributions to `score`; they add up to it."""

    similarity: float
    importance: float
    recency: float


class SearchItem(BaseModel):
    """One remembered message, with the numbers that ranked it."""

    message_id: uuid.UUID
    conversation_id: str
    user_id: str | None
    role: Role
    content: str
    metadata: dict[str, Any]
    created_at: datetime
    score: float = Field(description="Final rank score in [0, 1].")
    similarity: float = Field(description="Cosine similarity to the query, floored at 0.")
    importance: float
    recency: float = Field(description="0.5 ** (age / half-life), in [0, 1].")
    score_parts: ScoreParts


class SearchResponse(BaseModel):
    """Hits ordered by score, best first."""

    total: int
    items: list[SearchItem]
    embedding_model: str
