"""Message routes: store a message, read one back."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from memory_layer.api.deps import EmbedderDep, MetricsDep, PrincipalDep, SessionDep, SettingsDep
from memory_layer.models.message import Message
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
        archived_at=message.archived_at,
    )


@router.post("", response_model=MessageRead, responses=ERRORS)
async def create_message(
    body: MessageCreate,
    response: Response,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    embedder: EmbedderDep,
    metrics: MetricsDep,
) -> MessageRead:
    """Store a message with its embedding. A retry with the same client_message_id returns the
    first message (header `Idempotent-Replayed: true`)."""
    tenant_id = resolve_tenant(principal, body.tenant_id)
    result = await ingestion.ingest_message(
        session, tenant_id, body, settings=settings, embedder=embedder, metrics=metrics
    )
    response.headers["Idempotent-Replayed"] = "true" if result.replayed else "false"
    return to_read(result.message)


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
