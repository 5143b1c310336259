"""Schemas of the embedding-queue admin routes."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

from memory_layer.kit.schemas import Identifier


class EmbeddingQueueResponse(BaseModel):
    """How many messages wait for a vector and how many were given up on."""

    tenant_id: str | None = Field(description="The tenant counted; null means all tenants.")
    pending: int
    failed: int


class RequeueRequest(BaseModel):
    """Which failed messages to queue again (all failed ones when both fields are unset)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = None
    message_ids: list[uuid.UUID] | None = Field(default=None, min_length=1, max_length=10_000)


class RequeueResponse(BaseModel):
    """Failed messages put back in the queue with a fresh attempt budget."""

    requeued: int
