"""API key routes (admin): create (the secret shown once), list, revoke."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from memory_layer.auth import service
from memory_layer.auth.deps import AdminDep
from memory_layer.auth.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyListRequest,
    ApiKeyListResponse,
    ApiKeyRead,
)
from memory_layer.kit.db.session import ReadSessionDep, SessionDep
from memory_layer.kit.http.deps import CursorCodecDep
from memory_layer.kit.schemas import error_responses

router = APIRouter(prefix="/v1/admin/keys", tags=["admin"])


@router.post(
    "",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 403, 422, 503),
)
async def create_api_key(body: ApiKeyCreate, session: SessionDep, admin: AdminDep) -> ApiKeyCreated:
    """Create an API key; its secret is in this answer only (stored as a hash)."""
    key, plaintext = await service.create_api_key(
        session,
        body.tenant_id,
        body.name,
        scopes=body.scopes,
        expires_at=body.expires_at,
        actor=admin,
    )
    return ApiKeyCreated(**ApiKeyRead.model_validate(key).model_dump(), api_key=plaintext)


@router.get(
    "", response_model=ApiKeyListResponse, responses=error_responses(400, 401, 403, 422, 503)
)
async def list_api_keys(
    query: Annotated[ApiKeyListRequest, Query()],
    session: ReadSessionDep,
    _: AdminDep,
    cursors: CursorCodecDep,
) -> ApiKeyListResponse:
    """Stored API keys, newest first (never a secret or hash)."""
    page = await service.list_api_keys_page(session, **query.model_dump(), cursors=cursors)
    return ApiKeyListResponse.model_validate(page, from_attributes=True)


@router.delete(
    "/{key_id}", response_model=ApiKeyRead, responses=error_responses(401, 403, 404, 422, 503)
)
async def revoke_api_key(key_id: uuid.UUID, session: SessionDep, admin: AdminDep) -> ApiKeyRead:
    """Revoke a key: it is refused from the next request on."""
    key = await service.revoke_api_key_or_404(session, key_id, actor=admin)
    return ApiKeyRead.model_validate(key)
