"""Conversation routes: list, summarise, read the history of, and delete conversations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.auth.deps import READ, WRITE, CallerDep, ReadCallerDep
from memory_layer.auth.service import Principal
from memory_layer.conversations import service
from memory_layer.conversations.schemas import (
    ConversationDeleteResponse,
    ConversationDescriptionRead,
    ConversationListRequest,
    ConversationListResponse,
    ConversationMessagesRequest,
    ConversationMessagesResponse,
    ConversationPatch,
    ConversationRead,
    ConversationScopeRequest,
    ConversationStatePatchRequest,
    ConversationStatePut,
    ConversationStateRead,
)
from memory_layer.kit.errors import InvalidInput, UnsupportedMediaType
from memory_layer.kit.http.deps import CursorCodecDep, SettingsDep
from memory_layer.kit.schemas import IDENTIFIER_PATTERN, error_responses
from memory_layer.models.conversation_state import ConversationState
from memory_layer.policies.deps import RequestPoliciesDep

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


# `:path` because identifiers may contain "/"; the history route is declared first, so a path
# ending in /messages is always the history of the conversation before it.
ConversationId = Annotated[
    str,
    Path(pattern=IDENTIFIER_PATTERN, max_length=128, description="The conversation's id."),
]
LISTING_ERRORS = error_responses(400, 401, 403, 422, 503)
ONE_CONVERSATION = "/{conversation_id:path}"
ONE_CONVERSATION_ERRORS = error_responses(401, 403, 404, 422, 503)


@router.get(
    "", response_model=ConversationListResponse, responses=LISTING_ERRORS, dependencies=[READ]
)
async def list_conversations(
    query: Annotated[ConversationListRequest, Query()],
    caller: ReadCallerDep,
    cursors: CursorCodecDep,
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
    dependencies=[READ],
)
async def list_conversation_messages(
    conversation_id: ConversationId,
    query: Annotated[ConversationMessagesRequest, Query()],
    caller: ReadCallerDep,
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
    """The conversation a route acts on (the tenant its API key resolves to, and the id), the
    request's session and the key that called."""

    session: AsyncSession
    tenant_id: str
    conversation_id: str
    principal: Principal


async def get_target(
    conversation_id: ConversationId,
    query: Annotated[ConversationScopeRequest, Query()],
    caller: CallerDep,
) -> ConversationTarget:
    return ConversationTarget(
        caller.session, caller.tenant(query.tenant_id), conversation_id, caller.principal
    )


TargetDep = Annotated[ConversationTarget, Depends(get_target)]


# Working memory: one JSON document per conversation, under optimistic concurrency (ETag).
STATE = "/{conversation_id:path}/state"
IfMatch = Annotated[
    str | None,
    Header(description="Change only this version: the ETag last read (412 when it is stale)."),
]
IfNoneMatch = Annotated[
    str | None, Header(description="`*`: create only if the conversation has no state (else 412).")
]
MERGE_PATCH = "application/merge-patch+json"
PATCH_MEDIA_TYPES = (MERGE_PATCH, "application/json")
# Parsed by pydantic's JSON parser: a nesting too deep for it is a 422, not a RecursionError.
_ANY_JSON: TypeAdapter[object] = TypeAdapter(object)
ETAG_HEADER = {"ETag": {"description": "The state's version, for If-Match.", "schema": {"type": "string"}}}


def _state_answer(state: ConversationState, response: Response) -> ConversationStateRead:
    etag = service.state_etag(state)
    response.headers["ETag"] = etag
    return ConversationStateRead.model_validate(_read_fields(state, etag))


def _read_fields(state: ConversationState, etag: str) -> dict[str, object]:
    return {
        "conversation_id": state.conversation_id,
        "state": state.document,
        "version": state.version,
        "etag": etag,
        "user_id": state.user_id,
        "created_at": state.created_at,
        "updated_at": state.updated_at,
        "expires_at": state.expires_at,
    }


@router.get(
    STATE,
    response_model=ConversationStateRead,
    responses={**ONE_CONVERSATION_ERRORS, 200: {"headers": ETAG_HEADER}},
    dependencies=[READ],
)
async def get_conversation_state(target: TargetDep, response: Response) -> ConversationStateRead:
    """The conversation's working-memory document, with its version (ETag)."""
    state = await service.get_state(target.session, target.tenant_id, target.conversation_id)
    return _state_answer(state, response)


@router.put(
    STATE,
    response_model=ConversationStateRead,
    responses={
        **error_responses(401, 403, 409, 412, 413, 422, 503),
        200: {"description": "Replaced.", "headers": ETAG_HEADER},
        201: {"model": ConversationStateRead, "description": "Created.", "headers": ETAG_HEADER},
    },
    dependencies=[WRITE],
)
async def put_conversation_state(
    body: ConversationStatePut,
    target: TargetDep,
    settings: SettingsDep,
    policies: RequestPoliciesDep,
    response: Response,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> ConversationStateRead:
    """Create (201) or replace (200) the conversation's state; `If-Match` / `If-None-Match: *`
    make it conditional (412 and nothing changes when they fail)."""
    state, created = await service.put_state(
        target.session,
        target.tenant_id,
        target.conversation_id,
        service.StateWrite(body.state, body.ttl_seconds, body.user_id),
        preconditions=service.Preconditions(if_match, if_none_match),
        max_bytes=settings.max_state_bytes,
        # Read once per request, shared with the tenant rate limit.
        quota_bytes=(await policies.get(target.tenant_id)).max_state_bytes,
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return _state_answer(state, response)


@router.patch(
    STATE,
    response_model=ConversationStateRead,
    responses={
        **error_responses(401, 403, 404, 409, 412, 413, 415, 422, 503),
        200: {"headers": ETAG_HEADER},
    },
    dependencies=[WRITE],
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A JSON merge patch (RFC 7396) of the state document: members set "
            "to null are removed, objects are merged, anything else replaces.",
            "content": {
                media_type: {"schema": {"type": "object", "additionalProperties": True}}
                for media_type in PATCH_MEDIA_TYPES
            },
        }
    },
)
async def patch_conversation_state(
    request: Request,
    conversation_id: ConversationId,
    query: Annotated[ConversationStatePatchRequest, Query()],
    caller: CallerDep,
    settings: SettingsDep,
    policies: RequestPoliciesDep,
    response: Response,
    if_match: IfMatch = None,
) -> ConversationStateRead:
    """Change part of the conversation's state with a JSON merge patch (a new version)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in PATCH_MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"send the merge patch as {MERGE_PATCH} (or application/json), not {media_type!r}"
        )
    try:
        patch = _ANY_JSON.validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidInput(f"the body is not JSON: {exc.errors()[0]['msg']}", code="invalid_json") from None
    tenant = caller.tenant(query.tenant_id)
    state = await service.patch_state(
        caller.session,
        tenant,
        conversation_id,
        patch,
        ttl_seconds=query.ttl_seconds,
        preconditions=service.Preconditions(if_match=if_match),
        max_bytes=settings.max_state_bytes,
        quota_bytes=(await policies.get(tenant)).max_state_bytes,
    )
    return _state_answer(state, response)


@router.delete(
    STATE,
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403, 404, 412, 422, 503),
    dependencies=[WRITE],
)
async def delete_conversation_state(target: TargetDep, if_match: IfMatch = None) -> None:
    """Delete the conversation's state (its messages stay); `If-Match` makes it conditional."""
    await service.delete_state(
        target.session,
        target.tenant_id,
        target.conversation_id,
        preconditions=service.Preconditions(if_match=if_match),
        actor=target.principal,
    )


@router.get(
    ONE_CONVERSATION,
    response_model=ConversationRead,
    responses=ONE_CONVERSATION_ERRORS,
    dependencies=[READ],
)
async def get_conversation(target: TargetDep) -> ConversationRead:
    """One conversation's summary."""
    summary = await service.get_conversation(
        target.session, target.tenant_id, target.conversation_id
    )
    return ConversationRead.model_validate(summary)


@router.delete(
    ONE_CONVERSATION,
    response_model=ConversationDeleteResponse,
    responses=ONE_CONVERSATION_ERRORS,
    dependencies=[WRITE],
)
async def delete_conversation(target: TargetDep) -> ConversationDeleteResponse:
    """Delete every message of the conversation, archived ones included (not undoable)."""
    deleted = await service.delete_conversation(
        target.session, target.tenant_id, target.conversation_id, actor=target.principal
    )
    return ConversationDeleteResponse(deleted=deleted)


@router.patch(
    ONE_CONVERSATION,
    response_model=ConversationDescriptionRead,
    responses=error_responses(401, 403, 422, 503),
    dependencies=[WRITE],
)
async def describe_conversation(
    body: ConversationPatch, target: TargetDep, settings: SettingsDep
) -> ConversationDescriptionRead:
    """Set the conversation's own title, tags or metadata (fields left out stay); it may be set
    before the conversation's first message."""
    described = await service.describe_conversation(
        target.session,
        target.tenant_id,
        target.conversation_id,
        service.Description(
            title=body.title,
            clear_title="title" in body.model_fields_set and body.title is None,
            tags=body.tags if "tags" in body.model_fields_set else None,
            metadata=body.metadata if "metadata" in body.model_fields_set else None,
        ),
        max_metadata_bytes=settings.max_metadata_bytes,
    )
    return ConversationDescriptionRead.model_validate(described)
