"""Message routes: store a message, read one back."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from memory_layer.api.deps import EmbedderDep, MetricsDep, PrincipalDep, SessionDep, SettingsDep
from memory_layer.models.message import EmbeddingStatus, Message
from memory_layer.schemas.common import ErrorResponse, Identifier
from memory_layer.schemas.messages import MessageCreate, MessageRead
from memory_layer.services import ingestion
from memory_layer.services.auth import resolve_tenant

router = APIRouter(prefix="/v1/messages", tags=["messages"])

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 503)
}


def to_read(message: Message) -> MessageRead:
    return MessageRead(
        message_id=message.id,
        tenant_id=message.tenant_id,
        conversation_id=message.conversation_id,
        user_id=message.user_id,
        role=message.role,
        content=message.content,
        metadata=message.metadata_,
        importance=message.importance,
        created_at=message.created_at,
        client_message_id=message.client_message_id,
        embedding_status=message.embedding_status,
        embedding_model=message.embedding_model,
        embedding_attempts=message.embedding_attempts or 0,
        embedding_error=message.embedding_error,
        embedded_at=message.embedded_at,
        archived_at=message.archived_at,
        status_url=f"/v1/messages/{message.id}",
    )


@router.post(
    "",
    response_model=MessageRead,
    responses={
        **ERRORS,
        202: {"model": MessageRead, "description": "Committed; the embedding is queued for the "
              "worker. Poll `status_url` (also in the Location header)."},
    },
)
async def create_message(
    body: MessageCreate,
    response: Response,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    embedder: EmbedderDep,
    metrics: MetricsDep,
) -> MessageRead:
    """Store a message: 200 once it is committed with its vector, 202 once it is committed and
    queued for the embedding worker. A retry with the same client_message_id returns the first
    message (header `Idempotent-Replayed: true`)."""
    tenant_id = resolve_tenant(principal, body.tenant_id)
    result = await ingestion.ingest_message(
        session, tenant_id, body, settings=settings, embedder=embedder, metrics=metrics
    )
    response.headers["Idempotent-Replayed"] = "true" if result.replayed else "false"
    read = to_read(result.message)
    if read.embedding_status is EmbeddingStatus.pending:
        response.status_code = status.HTTP_202_ACCEPTED
        response.headers["Location"] = read.status_url
    return read


@router.get("/{message_id}", response_model=MessageRead, responses=ERRORS)
async def read_message(
    message_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    tenant_id: Annotated[Identifier | None, Query()] = None,
) -> MessageRead:
    """One stored message, with its embedding status."""
    tenant = resolve_tenant(principal, tenant_id)
    return to_read(await ingestion.get_message(session, tenant, message_id))
