"""Event stream routes: append to and read a conversation's events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status

from memory_layer.auth.deps import READ, WRITE, CallerDep, PrincipalDep
from memory_layer.auth.service import resolve_tenant
from memory_layer.embeddings.deps import embedder_of
from memory_layer.events import service
from memory_layer.events.schemas import EventCreate, EventListRequest, EventListResponse, EventRead
from memory_layer.kit.db.session import read_sessionmaker_of
from memory_layer.kit.db.wakeups import WakeupsDep
from memory_layer.kit.http.deps import CursorCodecDep, metrics_of, settings_of
from memory_layer.kit.observability.logging import current_request_id
from memory_layer.kit.schemas import IDENTIFIER_PATTERN, error_responses
from memory_layer.models.event import ConversationEvent
from memory_layer.policies.deps import policies_of

router = APIRouter(prefix="/v1/conversations", tags=["events"])

# `:path` as in conversations/: identifiers may contain "/". app.py includes this router before
# the conversations one, whose `/{conversation_id:path}` would otherwise take `.../events`.
EVENTS = "/{conversation_id:path}/events"
ConversationId = Annotated[
    str,
    Path(pattern=IDENTIFIER_PATTERN, max_length=128, description="The conversation's id."),
]


def _read(event: ConversationEvent) -> EventRead:
    return EventRead(
        conversation_id=event.conversation_id,
        seq=event.seq,
        type=event.type,
        data=event.data,
        description=event.description,
        message_id=str(event.message_id) if event.message_id is not None else None,
        user_id=event.user_id,
        created_at=event.created_at,
        expires_at=event.expires_at,
    )


@router.post(
    EVENTS,
    response_model=EventRead,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 403, 409, 413, 422, 503),
    dependencies=[WRITE],
)
async def append_event(
    conversation_id: ConversationId, body: EventCreate, request: Request, caller: CallerDep
) -> EventRead:
    """Append an event to the conversation's stream: 201 with its `seq` (the stream's next
    number). A `description` becomes a searchable message of kind `event`."""
    tenant_id = caller.tenant(body.tenant_id)
    event = await service.append_event(
        caller.session,
        tenant_id,
        conversation_id,
        service.NewEvent(
            type=body.type,
            data=body.data,
            description=body.description,
            user_id=body.user_id,
            ttl_seconds=body.ttl_seconds,
            expires_at=body.expires_at,
        ),
        settings=settings_of(request),
        embedder=embedder_of(request),
        metrics=metrics_of(request),
        policy=await policies_of(request).get(tenant_id),
        request_id=current_request_id(),
    )
    return _read(event)


@router.get(
    EVENTS,
    response_model=EventListResponse,
    responses=error_responses(400, 401, 403, 422, 503),
    dependencies=[READ],
)
async def list_events(
    conversation_id: ConversationId,
    query: Annotated[EventListRequest, Query()],
    request: Request,
    principal: PrincipalDep,
    cursors: CursorCodecDep,
    wakeups: WakeupsDep,
) -> EventListResponse:
    """The conversation's events after `after`, of the types asked, oldest (or newest) first, a
    page at a time; `wait_seconds` long-polls for the next event when none matches yet."""
    page = await service.read_events(
        read_sessionmaker_of(request),
        wakeups,
        resolve_tenant(principal, query.tenant_id),
        conversation_id,
        service.EventQuery(
            after=query.after,
            types=query.type.split(",") if query.type else None,
            order=query.order,
            limit=query.limit,
            cursor=query.cursor,
            wait_seconds=query.wait_seconds,
        ),
        cursors=cursors,
    )
    return EventListResponse(items=[_read(event) for event in page.items],
                             next_cursor=page.next_cursor)
