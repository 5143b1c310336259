"""Erasure routes: erase one person of a tenant; list the records (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from memory_layer.auth.deps import WRITE, AdminDep, PrincipalDep
from memory_layer.auth.service import resolve_tenant
from memory_layer.erasure import service
from memory_layer.erasure.schemas import (
    ErasureListRequest,
    ErasureListResponse,
    ErasureRequest,
    ErasureResponse,
)
from memory_layer.kit.db.session import SessionDep, SessionmakerDep
from memory_layer.kit.http.deps import CursorCodecDep, TenantSizesDep
from memory_layer.kit.schemas import IDENTIFIER_PATTERN, error_responses

router = APIRouter(tags=["erasure"])


@router.delete(
    "/v1/users/{user_id:path}",
    response_model=ErasureResponse,
    responses=error_responses(401, 403, 422, 503),
    dependencies=[WRITE],
)
async def erase_user(
    user_id: Annotated[
        str, Path(pattern=IDENTIFIER_PATTERN, max_length=128, description="The user to erase.")
    ],
    query: Annotated[ErasureRequest, Query()],
    sessionmaker: SessionmakerDep,
    principal: PrincipalDep,
    tenant_sizes: TenantSizesDep,
) -> ErasureResponse:
    """Erase one person (GDPR art. 17): delete their messages and conversation states and record
    it, in one transaction."""
    tenant_id = resolve_tenant(principal, query.tenant_id)
    record = await service.erase_user(
        sessionmaker,
        tenant_id,
        user_id,
        actor=principal,
        include_unattributed=query.include_unattributed,
        tenant_sizes=tenant_sizes,
    )
    return ErasureResponse.model_validate(record)


@router.get(
    "/v1/admin/erasures",
    response_model=ErasureListResponse,
    responses=error_responses(400, 401, 403, 422, 503),
    tags=["admin"],
)
async def list_erasures(
    query: Annotated[ErasureListRequest, Query()],
    session: SessionDep,
    _: AdminDep,
    cursors: CursorCodecDep,
) -> ErasureListResponse:
    """Erasure records, newest first: proof that a person's data was erased, and by whom."""
    page = await service.list_erasures(session, **query.model_dump(), cursors=cursors)
    return ErasureListResponse.model_validate(page, from_attributes=True)
