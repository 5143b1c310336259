"""Message routes: store one message or a batch, read, edit and delete one."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from pydantic import BaseModel
from starlette.convertors import StringConvertor, register_url_convertor

from memory_layer.auth.deps import READ, WRITE, Caller, CallerDep, ReadCallerDep
from memory_layer.channels.service import ChannelRules, load_rules
from memory_layer.config import Settings
from memory_layer.embeddings.deps import embedder_of
from memory_layer.embeddings.providers.base import EmbeddingProvider
from memory_layer.kit.db.session import SessionmakerDep
from memory_layer.kit.http.deps import CursorCodecDep, metrics_of, settings_of
from memory_layer.kit.observability.logging import current_request_id
from memory_layer.kit.observability.metrics import Metrics
from memory_layer.kit.schemas import Identifier, error_responses
from memory_layer.messages import service
from memory_layer.messages.schemas import (
    MessageBatchRequest,
    MessageBatchResponse,
    MessageBatchResult,
    MessageCreate,
    MessageDeleteResponse,
    MessageListRequest,
    MessageListResponse,
    MessageRead,
    MessageUpdate,
    UsageCreate,
    status_url,
)
from memory_layer.models.message import EmbeddingStatus
from memory_layer.policies.deps import policies_of
from memory_layer.policies.service import EffectivePolicy, RequestPolicies

PREFIX = "/v1/messages"
# The batch route takes far larger bodies than the others: create_app gives this path its own limit.
BATCH_PATH = f"{PREFIX}/batch"


class MessageIdConvertor(StringConvertor):
    """A path segment that is not `batch`: `PATCH /v1/messages/batch` is then the batch route's
    path with a method it does not take (405, `Allow: POST`), not a message id to validate."""

    regex = r"(?!batch$)[^/]+"


register_url_convertor("message_id", MessageIdConvertor())
# Every route of one message; the document and the metrics show it as /v1/messages/{message_id}.
ONE_MESSAGE = "/{message_id:message_id}"

router = APIRouter(prefix=PREFIX, tags=["messages"])


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    # Every route may also answer 500 (internal_error) and 503 (database_unavailable: the database
    # is unreachable or a commit failed).
    return error_responses(*codes, 500, 503)


WRITE_ERRORS = (401, 403, 409, 413, 422, 429)
QUEUED = (
    "Committed; the embedding is queued for the worker. Poll `status_url` (also in the Location "
    "header)."
)
TenantQuery = Annotated[
    Identifier | None, Query(description="Required unless the API key is bound to a tenant.")
]


def _answer(read: MessageRead, response: Response) -> MessageRead:
    """200 once the message has its vector; 202 with a Location while it is pending."""
    if read.embedding_status is EmbeddingStatus.pending:
        response.status_code = status.HTTP_202_ACCEPTED
        response.headers["Location"] = read.status_url
    return read


@dataclass(frozen=True)
class Writer(Caller):
    """What a route that stores or changes messages works with: the caller, the settings,
    embedder and metrics the service checks, embeds and counts with, and the tenant's policy."""

    settings: Settings
    embedder: EmbeddingProvider
    metrics: Metrics
    request_id: str | None
    policies: RequestPolicies

    async def policy(self, tenant_id: str) -> EffectivePolicy:
        """The tenant's policy as stored now, read on a short session of its own (the request's
        session stays unused until the text is embedded); the read the tenant rate limit made for
        this request, when it made one."""
        return await self.policies.get(tenant_id)

    async def channels(self, tenant_id: str) -> ChannelRules:
        """The tenant's channels, read like the policy on a short session of its own."""
        return await load_rules(self.policies.sessionmaker, tenant_id, self.policies.cache)


async def get_writer(request: Request, caller: CallerDep) -> Writer:
    return Writer(
        caller.principal, caller.session, settings_of(request), embedder_of(request),
        metrics_of(request), current_request_id(), policies_of(request),
    )


WriterDep = Annotated[Writer, Depends(get_writer)]


def _writes(model: type[BaseModel], queued: str, *codes: int) -> dict[int | str, dict[str, Any]]:
    """A write's responses: its errors, and 202 (`queued`) when the embedding is left to the worker."""
    return {**errors(*codes), 202: {"model": model, "description": queued}}


@router.post(
    "",
    response_model=MessageRead,
    responses=_writes(MessageRead, QUEUED, *WRITE_ERRORS),
    dependencies=[WRITE],
)
async def create_message(body: MessageCreate, response: Response, writer: WriterDep) -> MessageRead:
    """Store a message: 200 once it is committed with its vector, 202 once it is committed and
    queued for the embedding worker. A retry with the same client_message_id returns the first
    message (header `Idempotent-Replayed: true`)."""
    data = service.NewMessage(**body.model_dump(exclude={"tenant_id"}))
    tenant_id = writer.tenant(body.tenant_id)
    result = await service.ingest_message(
        writer.session,
        tenant_id,
        data,
        settings=writer.settings,
        embedder=writer.embedder,
        metrics=writer.metrics,
        request_id=writer.request_id,
        policy=await writer.policy(tenant_id),
        channel_rules=await writer.channels(tenant_id),
    )
    response.headers["Idempotent-Replayed"] = "true" if result.replayed else "false"
    return _answer(MessageRead.model_validate(result.message), response)


BATCH_QUEUED = "Committed; at least one item is queued for the embedding worker (its `status` is 202)."


@router.post(
    "/batch",
    response_model=MessageBatchResponse,
    responses=_writes(MessageBatchResponse, BATCH_QUEUED, *WRITE_ERRORS),
    dependencies=[WRITE],
)
async def create_messages_batch(
    body: MessageBatchRequest, response: Response, writer: WriterDep, sessionmaker: SessionmakerDep
) -> MessageBatchResponse:
    """Store up to MEMORY_MAX_BATCH_MESSAGES messages of one tenant, all or nothing: 200 when
    every item has its vector, 202 when some are queued for the worker; one result per item."""
    tenant_id = writer.tenant(body.tenant_id)
    items = [service.NewMessage(**item.model_dump()) for item in body.messages]
    results = await service.ingest_batch(
        writer.session,
        tenant_id,
        items,
        settings=writer.settings,
        embedder=writer.embedder,
        metrics=writer.metrics,
        sessionmaker=sessionmaker,
        request_id=writer.request_id,
        policy=await writer.policy(tenant_id),
        channel_rules=await writer.channels(tenant_id),
    )
    answers = [
        MessageBatchResult(
            message_id=result.message_id,
            status=(
                status.HTTP_202_ACCEPTED
                if result.embedding_status is EmbeddingStatus.pending
                else status.HTTP_200_OK
            ),
            embedding_status=result.embedding_status,
            replayed=result.replayed,
            status_url=status_url(result.message_id, tenant_id),
        )
        for result in results
    ]
    if any(answer.status == status.HTTP_202_ACCEPTED for answer in answers):
        response.status_code = status.HTTP_202_ACCEPTED
    return MessageBatchResponse(total=len(answers), items=answers)


@router.get(
    "",
    response_model=MessageListResponse,
    responses=errors(400, 401, 403, 422),
    dependencies=[READ],
)
async def list_messages(
    query: Annotated[MessageListRequest, Query()], caller: ReadCallerDep, cursors: CursorCodecDep
) -> MessageListResponse:
    """The tenant's messages across conversations, by kind, user, tag (metadata) and time, a page
    at a time; no query needed."""
    listing = service.MessageListing(
        filters=query.filters(),
        sort=query.sort,
        order=query.order,
        limit=query.limit,
        cursor=query.cursor,
    )
    page = await service.list_messages(
        caller.session, caller.tenant(query.tenant_id), listing, cursors=cursors
    )
    return MessageListResponse.model_validate(page, from_attributes=True)


@router.get(
    ONE_MESSAGE,
    response_model=MessageRead,
    responses=errors(401, 403, 404, 422),
    dependencies=[READ],
)
async def read_message(
    message_id: uuid.UUID, caller: ReadCallerDep, tenant_id: TenantQuery = None
) -> MessageRead:
    """One stored message, with its embedding status."""
    message = await service.get_message(caller.session, caller.tenant(tenant_id), message_id)
    return MessageRead.model_validate(message)


@router.post(
    "/{message_id}/usage",
    response_model=MessageRead,
    responses=errors(400, 401, 403, 404, 422),
    dependencies=[WRITE],
)
async def record_message_usage(
    message_id: uuid.UUID,
    caller: CallerDep,
    body: Annotated[UsageCreate | None, Body()] = None,
    tenant_id: TenantQuery = None,
) -> MessageRead:
    """Record that a memory was used, optionally with its outcome (success or failure): the
    counts and last_used_at it answers with rank it in search."""
    message = await service.record_usage(
        caller.session,
        caller.tenant(tenant_id),
        message_id,
        body.outcome if body is not None else None,
    )
    return MessageRead.model_validate(message)


EDIT_QUEUED = (
    "Changed; the new content is queued for the embedding worker. Poll `status_url` (also in the "
    "Location header)."
)


@router.patch(
    ONE_MESSAGE,
    response_model=MessageRead,
    responses=_writes(MessageRead, EDIT_QUEUED, 401, 403, 404, 409, 413, 422),
    dependencies=[WRITE],
)
async def update_message(
    message_id: uuid.UUID,
    body: MessageUpdate,
    response: Response,
    writer: WriterDep,
    tenant_id: TenantQuery = None,
) -> MessageRead:
    """Change a message's content, kind, importance or metadata: 200 when it has its vector,
    202 when new content is queued for the embedding worker."""
    tenant = writer.tenant(tenant_id)
    message = await service.update_message(
        writer.session,
        tenant,
        message_id,
        service.MessageChange(**body.model_dump()),
        settings=writer.settings,
        embedder=writer.embedder,
        metrics=writer.metrics,
        request_id=writer.request_id,
        policy=await writer.policy(tenant),
        channel_rules=await writer.channels(tenant),
    )
    return _answer(MessageRead.model_validate(message), response)


@router.delete(
    ONE_MESSAGE,
    response_model=MessageDeleteResponse,
    responses=errors(401, 403, 404, 422),
    dependencies=[WRITE],
)
async def delete_message(
    message_id: uuid.UUID, caller: CallerDep, tenant_id: TenantQuery = None
) -> MessageDeleteResponse:
    """Delete a message for good (its text, metadata and vector)."""
    deleted = await service.delete_message(
        caller.session, caller.tenant(tenant_id), message_id, actor=caller.principal
    )
    return MessageDeleteResponse(deleted=deleted)
