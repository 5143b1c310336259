"""Conversation routes: list, summarise, read the history of, and delete conversations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from memory_layer.auth.deps import PrincipalDep
from memory_layer.auth.service import resolve_tenant
from memory_layer.conversations import service
from memory_layer.conversations.schemas import (
    ConversationDeleteResponse,
    ConversationListRequest,
    ConversationListResponse,
    ConversationMessagesRequest,
    ConversationMessagesResponse,
    ConversationRead,
    ConversationScopeRequest,
)
from memory_layer.kit.db.session import SessionDep
from memory_layer.kit.http.deps import CursorCodecDep
from memory_layer.kit.schemas import IDENTIFIER_PATTERN, error_responses

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


# `:path` because identifiers may contain "/"; the history route is declared first, so a path
# ending in /messages is always the history of the conversation before it.
ConversationId = Annotated[
    str,
    Path(pattern=IDENTIFIER_PATTERN, max_length=128, description="The conversation's id."),
]


@router.get(
    "", response_model=ConversationListResponse, responses=error_responses(400, 401, 403, 422, 503)
)
async def list_conversations(
    query: Annotated[ConversationListRequest, Query()],
    session: SessionDep,
    principal: PrincipalDep,
    cursors: CursorCodecDep,
) -> ConversationListResponse:
    """The tenant's conversations, most recently active first, a page at a time."""
    tenant_id = resolve_tenant(principal, query.tenant_id)
    listing = service.ConversationQuery(**query.model_dump(exclude={"tenant_id"}))
    page = await service.list_conversations(session, tenant_id, listing, cursors=cursors)
    return ConversationListResponse.model_validate(page, from_attributes=True)


@router.get(
    "/{conversation_id:path}/messages",
    response_model=ConversationMessagesResponse,
    responses=error_responses(400, 401, 403, 422, 503),
)
async def list_conversation_messages(
    conversation_id: ConversationId,
    query: Annotated[ConversationMessagesRequest, Query()],
    session: SessionDep,
    principal: PrincipalDep,
    cursors: CursorCodecDep,
) -> ConversationMessagesResponse:
    """A conversation's messages, chronological (`order=desc&limit=N`: the last N turns)."""
    tenant_id = resolve_tenant(principal, query.tenant_id)
    history = service.HistoryQuery(**query.model_dump(exclude={"tenant_id"}))
    page = await service.list_conversation_messages(
        session, tenant_id, conversation_id, history, cursors=cursors
    )
    return ConversationMessagesResponse.model_validate(page, from_attributes=True)


@router.get(
    "/{conversation_id:path}",
    response_model=ConversationRead,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def get_conversation(
    conversation_id: ConversationId,
    query: Annotated[ConversationScopeRequest, Query()],
    session: SessionDep,
    principal: PrincipalDep,
) -> ConversationRead:
    """One conversation's summary."""
    tenant_id = resolve_tenant(principal, query.tenant_id)
    summary = await service.get_conversation(session, tenant_id, conversation_id)
    return ConversationRead.model_validate(summary)


@router.delete(
    "/{conversation_id:path}",
    response_model=ConversationDeleteResponse,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def delete_conversation(
    conversation_id: ConversationId,
    query: Annotated[ConversationScopeRequest, Query()],
    session: SessionDep,
    principal: PrincipalDep,
) -> ConversationDeleteResponse:
    """Delete every message of the conversation, archived ones included (not undoable)."""
    tenant_id = resolve_tenant(principal, query.tenant_id)
    deleted = await service.delete_conversation(session, tenant_id, conversation_id)
    return ConversationDeleteResponse(deleted=deleted)
