"""Schemas of the embedding-queue admin routes."""

from __future__ import annotations

from pydantic import BaseModel, Field

from memory_layer.kit.schemas import Identifier, JSONBody, UUIDText


class EmbeddingQueueResponse(BaseModel):
    """How many messages wait for a vector and how many were given up on."""

    tenant_id: str | None = Field(description="The tenant counted; null means all tenants.")
    pending: int
    failed: int
    context_pending: int | None = Field(
        default=None,
        description="Turns that have their own vector but no context vector yet "
        "(MEMORY_CONTEXT_VECTORS); null when context vectors are off.",
    )


class RequeueRequest(JSONBody):
    """Which failed messages to queue again (all failed ones when both fields are unset)."""

    tenant_id: Identifier | None = None
    # 1000 ids stay far below the body limit (MEMORY_MAX_CONTENT_CHARS-derived, 226 KB by default).
    message_ids: list[UUIDText] | None = Field(default=None, min_length=1, max_length=1000)


class RequeueResponse(BaseModel):
    """Failed messages put back in the queue with a fresh attempt budget."""

    requeued: int
