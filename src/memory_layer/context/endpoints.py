"""Context route: what to put in the prompt of a conversation's next model call, in one request."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from memory_layer.auth.deps import READ, PrincipalDep
from memory_layer.auth.service import resolve_tenant
from memory_layer.context import service
from memory_layer.context.schemas import (
    ChatMessage,
    ContextRequest,
    ContextResponse,
    MemoriesRead,
    MemoryRead,
    StateRead,
    SummaryRead,
    TokenUsage,
    TurnRead,
    TurnsRead,
)
from memory_layer.embeddings.deps import embedder_of
from memory_layer.kit.db.session import ReadSessionDep
from memory_layer.kit.http.deps import metrics_of, search_cache_of, settings_of, tenant_sizes_of
from memory_layer.kit.schemas import error_responses

router = APIRouter(prefix="/v1", tags=["context"])


def _response(context: service.Context) -> ContextResponse:
    return ContextResponse(
        conversation_id=context.conversation_id,
        user_id=context.user_id,
        query=context.query,
        state=StateRead.model_validate(context.state, from_attributes=True) if context.state else None,
        summary=SummaryRead.model_validate(context.summary, from_attributes=True)
        if context.summary else None,
        memories=MemoriesRead(
            items=[MemoryRead.model_validate(item, from_attributes=True) for item in context.memories],
            tokens=context.memories_tokens,
            omitted=context.memories_omitted,
        ),
        turns=TurnsRead(
            items=[TurnRead.model_validate(item, from_attributes=True) for item in context.turns],
            tokens=context.turns_tokens,
            omitted=context.turns_omitted,
        ),
        messages=[ChatMessage(role=m["role"], content=m["content"]) for m in context.messages],
        text=context.text,
        usage=TokenUsage(
            budget_tokens=context.budget_tokens,
            total_tokens=context.total_tokens,
            text_tokens=context.text_tokens,
            messages_tokens=context.messages_tokens,
            tokenizer=context.tokenizer,
            **context.parts,
        ),
        search_mode=context.search_mode,
        degraded=context.degraded,
    )


@router.post(
    "/context",
    response_model=ContextResponse,
    responses=error_responses(401, 403, 422, 503),
    dependencies=[READ],
)
async def get_context(
    body: ContextRequest, request: Request, session: ReadSessionDep, principal: PrincipalDep
) -> Response:
    """The conversation's prompt context within `budget_tokens`: working memory, summary,
    relevant long-term memories and the last turns, as parts, chat messages and one text."""
    context = await service.build_context(
        session,
        resolve_tenant(principal, body.tenant_id),
        body.conversation_id,
        user_id=body.user_id,
        query=body.query,
        budget_tokens=body.budget_tokens,
        max_turns=body.max_turns,
        channel=body.channel,
        settings=settings_of(request),
        embedder=embedder_of(request),
        metrics=metrics_of(request),
        tenant_sizes=tenant_sizes_of(request),
        cache=search_cache_of(request),
    )
    # Written by pydantic in one pass, as the search route does; response_model documents it.
    return Response(content=_response(context).model_dump_json(), media_type="application/json")
