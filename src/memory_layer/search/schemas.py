"""Schemas of the search routes."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from memory_layer.kit import strict_json
from memory_layer.kit.schemas import (
    NO_NUL_PATTERN,
    NON_BLANK_PATTERN,
    Identifier,
    JSONBody,
    NonBlankText,
    Timestamp,
    json_integer,
)
from memory_layer.models.message import EmbeddingStatus, Kind, Role
from memory_layer.models.policy import PiiKind
from memory_layer.search.plan import SearchFilters, SearchMode

# A channel's name (channels/): a plain pattern here, the reserved names are the registration's.
ChannelFilter = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=50)]


class SearchFilterFields(BaseModel):
    """Which messages qualify: the filters of search, shared by the listings that take them."""

    model_config = ConfigDict(extra="forbid")

    conversation_id: Identifier | None = None
    user_id: Identifier | None = None
    role: Annotated[Role, Strict(False)] | None = None
    kind: Annotated[Kind, Strict(False)] | None = Field(
        default=None, description="Only memories of this kind (message, fact, preference, ...)."
    )
    pii_kind: Annotated[PiiKind, Strict(False)] | None = Field(
        default=None,
        description="Only messages in whose content this kind of personal data was found (PII "
        "mode detect or redact).",
    )
    channel: ChannelFilter | None = Field(
        default=None, description="Only messages of this channel (`default` unless written to another)."
    )
    importance_min: float | None = Field(default=None, ge=0.0, le=1.0)
    since: Timestamp | None = Field(default=None, description="Only messages written at or after this time.")
    until: Timestamp | None = Field(default=None, description="Only messages written at or before this time.")
    # In a query string an object is JSON text (not spread over parameters, as OpenAPI's default
    # form style would): a string of JSON holding an object here (kit/http/openapi.py declares the
    # parameter as `content: application/json` with that object's schema), an object in SearchBody.
    metadata: Annotated[
        dict[str, Any] | None,
        WithJsonSchema({"anyOf": [
            {"type": "string", "contentMediaType": "application/json", "contentSchema": {
                "type": "object", "propertyNames": {"pattern": NO_NUL_PATTERN}}},
            {"type": "null"},
        ]}),
    ] = Field(
        default=None,
        description="Only messages whose metadata contains this JSON object (PostgreSQL @>), "
        'given as JSON text, e.g. `{"tags":["travel"]}`. No NUL (\\u0000) in any key or string.',
    )
    include_archived: bool = Field(default=False, description="Also include archived messages.")
    include_superseded: bool = Field(
        default=False,
        description="Also include facts a newer fact replaced (superseded_by is set).",
    )

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                value = strict_json.loads(value)
            except strict_json.JSONTextError as exc:
                raise ValueError(f"must be a JSON object ({exc.message})") from exc
        if value is not None and not isinstance(value, dict):
            raise ValueError("must be a JSON object")
        if value is not None and "\\u0000" in json.dumps(value):
            raise ValueError("must not contain NUL (\\u0000) characters")
        return value

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError("since must not be after until")
        return self

    def filters(self) -> SearchFilters:
        return SearchFilters(
            conversation_id=self.conversation_id,
            user_id=self.user_id,
            role=self.role.value if self.role is not None else None,
            kind=self.kind.value if self.kind is not None else None,
            pii_kind=self.pii_kind.value if self.pii_kind is not None else None,
            channel=self.channel,
            importance_min=self.importance_min,
            since=self.since,
            until=self.until,
            metadata=self.metadata,
            include_archived=self.include_archived,
            include_superseded=self.include_superseded,
        )


class SearchRequest(SearchFilterFields):
    """What to look for, and where (query string for GET, JSON body for POST)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = Field(
        default=None, description="Required unless the API key is bound to a tenant."
    )
    query: NonBlankText = Field(min_length=1, max_length=4096)
    top_k: int = Field(default=5, ge=1, le=100)
    mode: Annotated[SearchMode, Strict(False)] = Field(
        default=SearchMode.hybrid,
        description="hybrid: vector and keyword candidates fused (MEMORY_SEARCH_FUSION); vector: "
        "embeddings only; keyword: full text only (no model call, finds pending messages).",
    )
    min_score: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Drop hits whose final score is lower."
    )
    diversity: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="0 keeps the score order; up to 1 trades score for variety (maximal "
        "marginal relevance over the candidates' embeddings).",
    )


class SearchBody(SearchRequest, JSONBody):
    """The search of POST /v1/memory/search: the same fields as a JSON body, with JSON types;
    `vector` instead of `query` searches by a vector of the client's own."""

    model_config = ConfigDict(extra="forbid", strict=True)

    query: NonBlankText | None = Field(  # type: ignore[assignment]
        default=None, min_length=1, max_length=4096, description="The text to look for, or send `vector`."
    )
    vector: list[float] | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="Search by this vector instead of a query text (exactly "
        "MEMORY_EMBEDDING_DIMENSIONS numbers, else 422 embedding_dimension_mismatch): no model "
        "call, nearest stored vectors by cosine similarity. Vector-only: there is no text for the "
        "keyword half, so `mode` must be `vector` (its default here).",
    )
    embedding_model: Annotated[
        str, Field(min_length=1, max_length=128, pattern=NON_BLANK_PATTERN)
    ] | None = Field(
        default=None,
        description="With `vector`: search the vectors stored with this model name (messages "
        "written with their own `embedding`). Default: the service's model.",
    )

    top_k: Annotated[
        int, Field(ge=1, le=100), Strict(False), BeforeValidator(json_integer)
    ] = 5
    metadata: dict[str, Any] | None = Field(
        default=None,
        description="Only messages whose metadata contains this JSON object (PostgreSQL @>). "
        "No NUL (\\u0000) in any key or string.",
        json_schema_extra={"propertyNames": {"pattern": NO_NUL_PATTERN}},
    )

    @model_validator(mode="after")
    def _query_or_vector(self) -> Self:
        if (self.query is None) == (self.vector is None):
            raise ValueError("send either query or vector")
        if self.vector is not None:
            if "mode" not in self.model_fields_set:
                self.mode = SearchMode.vector
            elif self.mode is not SearchMode.vector:
                raise ValueError(
                    "a search by vector is vector-only (no text for the keyword half): "
                    "mode must be vector"
                )
        elif self.embedding_model is not None:
            raise ValueError("embedding_model goes with vector")
        return self


class ScoreParts(BaseModel):
    """Weighted contributions to `score`; they add up to it."""

    relevance: float
    importance: float
    recency: float


class Explanation(BaseModel):
    """Why a message ranked where it did."""

    vector_rank: int | None = Field(description="Rank among the nearest neighbours, from 1; null "
                                    "when not among the vector candidates.")
    similarity: float | None = Field(description="Cosine similarity to the query (with "
                                     "MEMORY_CONTEXT_VECTORS, the better of the message's own "
                                     "and its context vector's, or their mean); null when the "
                                     "message has no vector of the current model yet.")
    keyword_rank: int | None = Field(description="Rank among the full-text matches, from 1.")
    keyword_score: float | None = Field(description="Full-text score in [0, 1]: by "
                                        "MEMORY_SEARCH_KEYWORD_SCORING, BM25 over the rows "
                                        "searched (sum over query terms of idf x saturated term "
                                        "frequency, over its maximum; the default), or half cover "
                                        "density ts_rank_cd / (1 + ts_rank_cd), half whether every "
                                        "query term matched.")
    fused_score: float = Field(description="Reciprocal rank fusion: sum of 1 / (k + rank).")
    relevance: float = Field(description="The query-match signal in [0, 1]: similarity (vector), "
                             "keyword_score (keyword); for hybrid, by MEMORY_SEARCH_FUSION, "
                             "min(1, similarity + MEMORY_SEARCH_KEYWORD_WEIGHT * keyword_score) "
                             "(weighted, the default) or fused_score over its maximum (rrf).")
    importance: float
    recency: float
    mmr_rank: int | None = Field(default=None, description="Position chosen by diversity "
                                 "re-ranking, when `diversity` > 0.")
    feedback: float = Field(default=1.0, description="The factor usage outcomes put on every part "
                            "of the score: 1 - MEMORY_SEARCH_FAILURE_PENALTY * failures / "
                            "(successes + failures + 2); 1 without failures.")
    session_boost: float = Field(default=0.0, description="What was added to `relevance` (capped "
                                 "at 1) because the message was written within "
                                 "MEMORY_SEARCH_SESSION_GAP_MINUTES of at least two of the five "
                                 "best hits of its conversation (MEMORY_SEARCH_SESSION_BOOST), "
                                 "short of passing the best hit; 0 otherwise.")


class SearchItem(BaseModel):
    """One remembered message, with the numbers that ranked it."""

    message_id: uuid.UUID
    conversation_id: str
    user_id: str | None
    role: Role
    kind: Kind
    content: str
    metadata: dict[str, Any]
    created_at: datetime
    embedding_status: EmbeddingStatus
    score: float = Field(description="Final rank score in [0, 1].")
    similarity: float | None = Field(
        description="Cosine similarity to the query, floored at 0 (with MEMORY_CONTEXT_VECTORS, "
        "the better of the message's own and its context vector's, or their mean); null when "
        "the message has no vector of the current model yet (or in keyword mode)."
    )
    importance: float
    recency: float = Field(
        description="0.5 ** (age / half-life of the message's kind), in [0, 1] "
        "(MEMORY_KIND_HALF_LIFE_HOURS, else MEMORY_RECENCY_HALF_LIFE_HOURS); the age counts "
        "from the last use when later (MEMORY_RECENCY_FROM_LAST_USE)."
    )
    score_parts: ScoreParts
    explanation: Explanation
    use_count: int = Field(default=0, description="Recorded uses (POST /v1/messages/{id}/usage).")
    success_count: int = Field(default=0, description="Uses recorded with outcome success.")
    failure_count: int = Field(default=0, description="Uses recorded with outcome failure.")
    last_used_at: datetime | None = Field(
        default=None,
        description="The last recorded use; recency counts from it when it is later than "
        "created_at (MEMORY_RECENCY_FROM_LAST_USE).",
    )


class SearchResponse(BaseModel):
    """Hits ordered by score, best first."""

    total: int
    items: list[SearchItem]
    mode: Annotated[SearchMode, Strict(False)] = Field(description="The mode that produced the items.")
    degraded: str | None = Field(
        default=None,
        description="Set when hybrid search fell back to keyword only (the embedding provider "
        "failed); the reason.",
    )
    embedding_model: str


class RelatedRequest(SearchFilterFields):
    """How many related messages, and which may be (query string): the filters of search."""

    tenant_id: Identifier | None = Field(
        default=None, description="Required unless the API key is bound to a tenant."
    )
    top_k: int = Field(default=5, ge=1, le=100)


class RelatedResponse(BaseModel):
    """The messages nearest to a stored one, best first, the message itself left out."""

    total: int
    items: list[SearchItem]
    embedding_model: str
