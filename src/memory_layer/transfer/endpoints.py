"""Transfer routes: a tenant's messages out as NDJSON, and NDJSON lines in."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request

from memory_layer.auth.deps import READ, WRITE, PrincipalDep
from memory_layer.auth.service import resolve_tenant
from memory_layer.embeddings.deps import EmbedderDep
from memory_layer.kit.db.session import ReadSessionmakerDep, SessionmakerDep
from memory_layer.kit.http.deps import SettingsDep
from memory_layer.kit.http.streaming import NDJSONResponse
from memory_layer.kit.schemas import Identifier, Timestamp, error_responses
from memory_layer.transfer import service
from memory_layer.transfer.format import MEDIA_TYPE
from memory_layer.transfer.schemas import ExportedMessage, ImportFailure, ImportResponse

router = APIRouter(prefix="/v1", tags=["transfer"])

TenantQuery = Annotated[
    Identifier | None, Query(description="Required unless the API key is bound to a tenant.")
]

ERRORS = error_responses(401, 403, 422, 503)


@router.get(
    "/export",
    response_class=NDJSONResponse,
    # Documents the line format (and puts it in the OpenAPI components); the body itself is
    # streamed, never validated as one model.
    response_model=ExportedMessage,
    responses={
        **ERRORS,
        200: {
            "description": "One `ExportedMessage` JSON object per line, ordered by (created_at, "
            "message_id), streamed as it is read.",
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ExportedMessage"}}},
        },
    },
    dependencies=[READ],
)
async def export_messages(
    sessionmaker: ReadSessionmakerDep,
    principal: PrincipalDep,
    tenant_id: TenantQuery = None,
    conversation_id: Annotated[Identifier | None, Query()] = None,
    user_id: Annotated[Identifier | None, Query()] = None,
    since: Annotated[
        Timestamp | None, Query(description="Only messages created at or after this time.")
    ] = None,
    include_embeddings: Annotated[
        bool, Query(description="Add each message's vector (`embedding`).")
    ] = False,
    channel: Annotated[
        str | None,
        Query(pattern=r"^[a-z][a-z0-9_]*$", max_length=50, description="Only this channel's messages."),
    ] = None,
) -> NDJSONResponse:
    """Export the tenant's messages as NDJSON (archived ones included), in the import's format;
    an encrypted channel's messages in plaintext."""
    tenant = resolve_tenant(principal, tenant_id)
    query = service.ExportQuery(
        tenant, conversation_id, user_id, since, include_embeddings, channel=channel
    )
    return NDJSONResponse(await service.open_export(sessionmaker, query))


@router.post(
    "/import",
    response_model=ImportResponse,
    responses={
        **error_responses(401, 403),
        409: {"model": ImportFailure, "description": "A chunk would take the tenant past a quota "
              "(`quota_exceeded`); the lines through `stored_through_line` are committed."},
        413: {"model": ImportFailure, "description": "The body exceeds MEMORY_MAX_IMPORT_BYTES; "
              "`detail` names the lines stored before."},
        422: {"model": ImportFailure, "description": "A bad line: `detail` names it and what was "
              "stored; the lines through `stored_through_line` are committed."},
        **error_responses(503),
    },
    openapi_extra={
        "requestBody": {
            # An empty body imports nothing (200, no lines): the body is optional.
            "required": False,
            "description": "NDJSON: one `ExportedMessage` per line (what GET /v1/export writes).",
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ExportedMessage"}}},
        }
    },
    dependencies=[WRITE],
)
async def import_messages(
    request: Request,
    sessionmaker: SessionmakerDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    embedder: EmbedderDep,
    tenant_id: TenantQuery = None,
) -> ImportResponse:
    """Import NDJSON lines (an export) into the tenant; importing the same lines again stores
    nothing new. Written in chunks: a bad line is a 422 naming it and the lines stored."""
    tenant = resolve_tenant(principal, tenant_id)
    # A bad line is answered at once, without reading the rest of the body: uvicorn and HTTP
    # clients (curl, httpx) handle an answer that arrives while the body is still being sent.
    report = await service.import_ndjson(
        sessionmaker,
        tenant,
        request.stream(),
        settings=settings,
        embedder=embedder,
        actor=principal,
    )
    return ImportResponse(**asdict(report))
