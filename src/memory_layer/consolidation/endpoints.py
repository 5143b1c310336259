"""Consolidation routes: a user's profile of facts, and a conversation's summary on demand."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from memory_layer.auth.deps import READ, WRITE, PrincipalDep, ReadCallerDep
from memory_layer.auth.service import resolve_tenant
from memory_layer.consolidation import service
from memory_layer.consolidation.deps import DistillersDep
from memory_layer.consolidation.schemas import (
    FactListRequest,
    FactListResponse,
    SummarizeRequest,
    SummaryRead,
)
from memory_layer.kit.db.session import SessionmakerDep
from memory_layer.kit.http.deps import CursorCodecDep
from memory_layer.kit.schemas import IDENTIFIER_PATTERN, error_responses
from memory_layer.models.message import Kind

router = APIRouter(tags=["consolidation"])

UserId = Annotated[
    str, Path(pattern=IDENTIFIER_PATTERN, max_length=128, description="The user.")
]
ConversationId = Annotated[
    str, Path(pattern=IDENTIFIER_PATTERN, max_length=128, description="The conversation's id.")
]


@router.get(
    "/v1/users/{user_id:path}/facts",
    response_model=FactListResponse,
    responses=error_responses(400, 401, 403, 422, 503),
    dependencies=[READ],
)
async def list_user_facts(
    user_id: UserId,
    query: Annotated[FactListRequest, Query()],
    caller: ReadCallerDep,
    cursors: CursorCodecDep,
) -> FactListResponse:
    """The user's current profile: the facts and preferences distilled from their turns, newest
    first, each with its provenance and confidence."""
    facts = service.FactQuery(
        include_superseded=query.include_superseded,
        kind=Kind(query.kind.value) if query.kind is not None else None,
        limit=query.limit,
        cursor=query.cursor,
    )
    page = await service.list_user_facts(
        caller.session, caller.tenant(query.tenant_id), user_id, facts, cursors=cursors
    )
    return FactListResponse.model_validate(page, from_attributes=True)


@router.post(
    "/v1/conversations/{conversation_id:path}/summarize",
    response_model=SummaryRead,
    responses=error_responses(401, 403, 404, 409, 422, 503),
    dependencies=[WRITE],
)
async def summarize_conversation(
    conversation_id: ConversationId,
    query: Annotated[SummarizeRequest, Query()],
    principal: PrincipalDep,
    sessionmaker: SessionmakerDep,
    distillers: DistillersDep,
) -> SummaryRead:
    """Make the conversation's summary now, covering its newest turn; the previous summary is
    replaced, never duplicated."""
    tenant_id = resolve_tenant(principal, query.tenant_id)
    outcome = await service.request_summary(sessionmaker, tenant_id, conversation_id, distillers)
    return SummaryRead(
        id=outcome.id,
        conversation_id=conversation_id,
        content=outcome.content,
        covers_through=outcome.covers_through,
        source_message_ids=outcome.source_message_ids,
        updated=outcome.updated,
    )
