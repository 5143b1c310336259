"""Admin routes of the embedding queue: its depth, and re-queueing failed messages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from memory_layer.auth.deps import AdminDep
from memory_layer.config import ContextVectors
from memory_layer.embeddings import service
from memory_layer.embeddings.schemas import (
    EmbeddingQueueResponse,
    RequeueRequest,
    RequeueResponse,
)
from memory_layer.kit.db.session import SessionDep
from memory_layer.kit.http.deps import SettingsDep
from memory_layer.kit.schemas import Identifier, error_responses

router = APIRouter(prefix="/v1/admin/embeddings", tags=["admin"])

ADMIN_ERRORS = error_responses(401, 403, 422)


@router.get("", response_model=EmbeddingQueueResponse, responses=ADMIN_ERRORS)
async def embedding_queue_status(
    session: SessionDep,
    settings: SettingsDep,
    _: AdminDep,
    tenant_id: Annotated[
        Identifier | None, Query(description="Only this tenant; default: every tenant.")
    ] = None,
) -> EmbeddingQueueResponse:
    """Messages waiting for the embedding worker and messages it gave up on."""
    depth = await service.queue_status(
        session, tenant_id, with_context=settings.context_vectors is not ContextVectors.off
    )
    return EmbeddingQueueResponse(tenant_id=depth.tenant_id, pending=depth.pending,
                                  failed=depth.failed, context_pending=depth.context_pending)


@router.post("/requeue", response_model=RequeueResponse, responses=ADMIN_ERRORS)
async def requeue_failed_embeddings(
    body: RequeueRequest, session: SessionDep, admin: AdminDep
) -> RequeueResponse:
    """Queue failed messages again with a fresh attempt budget (all, a tenant's, or listed ids)."""
    requeued = await service.requeue_failed(
        session, body.tenant_id, body.message_ids, actor=admin
    )
    return RequeueResponse(requeued=requeued)
