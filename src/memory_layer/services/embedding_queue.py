"""The embedding queue as operators see it: depth per status, and re-queueing failed messages."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.errors import InvalidInput
from memory_layer.repositories.embedding_jobs import EmbeddingJobRepository
from memory_layer.schemas.admin import EmbeddingQueueResponse, RequeueRequest, RequeueResponse


async def queue_status(session: AsyncSession, tenant_id: str | None) -> EmbeddingQueueResponse:
    """Pending and failed message counts, for one tenant or all."""
    counts = await EmbeddingJobRepository(session).status_counts(tenant_id)
    return EmbeddingQueueResponse(tenant_id=tenant_id, pending=counts["pending"],
                                  failed=counts["failed"])


async def requeue_failed(session: AsyncSession, request: RequeueRequest) -> RequeueResponse:
    """Give failed messages a fresh attempt budget; the NOTIFY trigger wakes the workers."""
    if request.message_ids is not None and request.tenant_id is None:
        raise InvalidInput("message_ids need a tenant_id", code="tenant_required")
    count = await EmbeddingJobRepository(session).requeue_failed(
        request.tenant_id, request.message_ids
    )
    return RequeueResponse(requeued=count)
