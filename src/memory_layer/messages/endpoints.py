"""Message routes: store a message, read one back."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from memory_layer.auth.deps import PrincipalDep
from memory_layer.auth.service import resolve_tenant
from memory_layer.embeddings.deps import EmbedderDep
from memory_layer.kit.db.session import SessionDep
from memory_layer.kit.http.deps import MetricsDep, SettingsDep
from memory_layer.kit.schemas import ErrorResponse, Identifier
from memory_layer.messages import service
from memory_layer.messages.schemas import MessageCreate, MessageRead
from memory_layer.models.message import EmbeddingStatus

router = APIRouter(prefix="/v1/messages", tags=["messages"])

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 503)
}


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
    data = service.NewMessage(**body.model_dump(exclude={"tenant_id"}))
    result = await service.ingest_message(
        session, tenant_id, data, settings=settings, embedder=embedder, metrics=metrics
    )
    response.headers["Idempotent-Replayed"] = "true" if result.replayed else "false"
    read = MessageRead.model_validate(result.message)
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
    return MessageRead.model_validate(await service.get_message(session, tenant, message_id))
