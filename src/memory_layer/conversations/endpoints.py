"""Conversation routes: list, summarise, read the history of, and delete conversations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.auth.deps import CallerDep
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
from memory_layer.kit.http.deps import CursorCodecDep
from memory_layer.kit.schemas import IDENTIFIER_PATTERN, error_responses

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


# `:path` because identifiers may contain "/"; the history route is declared first, so a path
# ending in /messages is always the history of the conversation before it.
ConversationId = Annotated[
    str,
    Path(pattern=IDENTIFIER_PATTERN, max_length=128, description="The conversation's id."),
]
LISTING_ERRORS = error_responses(400, 401, 403, 422, 503)


@router.get("", response_model=ConversationListResponse, responses=LISTING_ERRORS)
async def list_conversations(
    query: Annotated[ConversationListRequest, Query()], caller: CallerDep, cursors: CursorCodecDep
) -> ConversationListResponse:
    """The tenant's conversations, most recently active first, a page at a time."""
    listing = service.ConversationQuery(**query.model_dump(exclude={"tenant_id"}))
    page = await service.list_conversations(
        caller.session, caller.tenant(query.tenant_id), listing, cursors=cursors
    )
    return ConversationListResponse.model_validate(page, from_attributes=True)


@router.get(
    "/{conversation_id:path}/messages",
    response_model=ConversationMessagesResponse,
    responses=LISTING_ERRORS,
)
async def list_conversation_messages(
    conversation_id: ConversationId,
    query: Annotated[ConversationMessagesRequest, Query()],
    caller: CallerDep,
    cursors: CursorCodecDep,
) -> ConversationMessagesResponse:
    """A conversation's messages, chronological (`order=desc&limit=N`: the last N turns)."""
    history = service.HistoryQuery(**query.model_dump(exclude={"tenant_id"}))
    page = await service.list_conversation_messages(
        caller.session, caller.tenant(query.tenant_id), conversation_id, history, cursors=cursors
    )
    return ConversationMessagesResponse.model_validate(page, from_attributes=True)


@dataclass(frozen=True)
class ConversationTarget:
    """The conversation a route acts on (the tenant its API key resolves to, and the id), and
    the request's session."""

    session: AsyncSession
    tenant_id: str
    conversation_id: str


async def get_target(
    conversation_id: ConversationId,
    query: Annotated[ConversationScopeRequest, Query()],
    caller: CallerDep,
) -> ConversationTarget:
    return ConversationTarget(caller.session, caller.tenant(query.tenant_id), conversation_id)


TargetDep = Annotated[ConversationTarget, Depends(get_target)]
ONE_CONVERSATION = "/{conversation_id:path}"
ONE_CONVERSATION_ERRORS = error_responses(401, 403, 404, 422, 503)


@router.get(ONE_CONVERSATION, response_model=ConversationRead, responses=ONE_CONVERSATION_ERRORS)
async def get_conversation(target: TargetDep) -> ConversationRead:
    """One conversation's summary."""
    summary = await service.get_conversation(
        target.session, target.tenant_id, target.conversation_id
    )
    return ConversationRead.model_validate(summary)


@router.delete(
    ONE_CONVERSATION, response_model=ConversationDeleteResponse, responses=ONE_CONVERSATION_ERRORS
)
async def delete_conversation(target: TargetDep) -> ConversationDeleteResponse:
    """Delete every message of the conversation, archived ones included (not undoable)."""
    deleted = await service.delete_conversation(
        target.session, target.tenant_id, target.conversation_id
    )
    return ConversationDeleteResponse(deleted=deleted)
