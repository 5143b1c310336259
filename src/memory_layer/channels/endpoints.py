"""Channel routes (admin): register, read, list and delete a tenant's channels; the JSON Schema
of the channels YAML file."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from memory_layer.auth.deps import AdminDep
from memory_layer.channels import service
from memory_layer.channels.schemas import (
    ChannelListRequest,
    ChannelListResponse,
    ChannelPut,
    ChannelRead,
    document_schema,
)
from memory_layer.kit.db.session import SessionDep
from memory_layer.kit.http.deps import CursorCodecDep
from memory_layer.kit.pagination import PageRequest
from memory_layer.kit.schemas import IDENTIFIER_PATTERN, error_responses

router = APIRouter(prefix="/v1/admin/tenants", tags=["admin"])
schema_router = APIRouter(prefix="/v1/admin/channels", tags=["admin"])

TenantPath = Annotated[
    str, Path(pattern=IDENTIFIER_PATTERN, max_length=128, description="The tenant.")
]
NamePath = Annotated[
    str,
    Path(pattern=service.NAME_PATTERN, max_length=service.NAME_MAX, description="The channel."),
]
ERRORS = (401, 403, 404, 422, 500, 503)


@router.get(
    "/{tenant_id:path}/channels",
    response_model=ChannelListResponse,
    responses=error_responses(400, *ERRORS),
)
async def list_channels(
    tenant_id: TenantPath,
    query: Annotated[ChannelListRequest, Query()],
    session: SessionDep,
    cursors: CursorCodecDep,
    _: AdminDep,
) -> ChannelListResponse:
    """A tenant's registered channels, by name (`default` is listed once registered)."""
    page = await service.list_channels(
        session, tenant_id, PageRequest(query.limit, query.cursor), cursors=cursors
    )
    return ChannelListResponse.model_validate(page, from_attributes=True)


@router.get(
    "/{tenant_id:path}/channels/{name}",
    response_model=ChannelRead,
    responses=error_responses(*ERRORS),
)
async def get_channel(
    tenant_id: TenantPath, name: NamePath, session: SessionDep, _: AdminDep
) -> ChannelRead:
    """One registered channel of a tenant."""
    return ChannelRead.model_validate(await service.get_channel(session, tenant_id, name))


@router.put(
    "/{tenant_id:path}/channels/{name}",
    response_model=ChannelRead,
    responses=error_responses(409, *ERRORS),
)
async def put_channel(
    tenant_id: TenantPath, name: NamePath, body: ChannelPut, session: SessionDep, admin: AdminDep
) -> ChannelRead:
    """Register a channel of a tenant, or replace its rules; they apply from the next write on.
    409 `encryption_unavailable` for an encrypted channel without MEMORY_ENCRYPTION_KEYS."""
    channel = await service.put_channel(session, tenant_id, name, body.settings(), actor=admin)
    return ChannelRead.model_validate(channel)


@router.delete(
    "/{tenant_id:path}/channels/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(*ERRORS),
)
async def delete_channel(
    tenant_id: TenantPath, name: NamePath, session: SessionDep, admin: AdminDep
) -> Response:
    """Unregister a channel; its messages stay as they are."""
    await service.delete_channel(session, tenant_id, name, actor=admin)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@schema_router.get("/schema", responses=error_responses(401, 403, 500, 503))
async def get_channels_schema(_: AdminDep) -> dict[str, Any]:
    """The JSON Schema of the channels YAML file (`memory-layer channels apply`)."""
    return document_schema()
