"""The audit route: read the log (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from memory_layer.audit import service
from memory_layer.audit.schemas import AuditListRequest, AuditListResponse
from memory_layer.auth.deps import AdminDep
from memory_layer.kit.db.session import ReadSessionDep
from memory_layer.kit.http.deps import CursorCodecDep
from memory_layer.kit.schemas import error_responses

router = APIRouter(prefix="/v1/admin/audit", tags=["admin"])


@router.get(
    "", response_model=AuditListResponse, responses=error_responses(400, 401, 403, 422, 503)
)
async def list_audit_events(
    query: Annotated[AuditListRequest, Query()],
    session: ReadSessionDep,
    _: AdminDep,
    cursors: CursorCodecDep,
) -> AuditListResponse:
    """The audit log, newest first: key changes, deletions, erasures, imports, retention runs."""
    page = await service.list_events(session, **query.model_dump(), cursors=cursors)
    return AuditListResponse.model_validate(page, from_attributes=True)
