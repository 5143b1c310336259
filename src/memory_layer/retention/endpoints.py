"""The retention route: what cron calls."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from memory_layer.auth.deps import AdminDep
from memory_layer.kit.db.session import SessionDep
from memory_layer.kit.http.deps import SettingsDep
from memory_layer.kit.schemas import error_responses
from memory_layer.retention import service
from memory_layer.retention.schemas import RetentionRequest, RetentionResponse

router = APIRouter(prefix="/v1/admin/retention", tags=["admin"])


@router.post("/run", response_model=RetentionResponse, responses=error_responses(401, 403, 409, 422))
async def run_retention(
    session: SessionDep,
    settings: SettingsDep,
    admin: AdminDep,
    body: Annotated[RetentionRequest | None, Body()] = None,
) -> RetentionResponse:
    """Archive or delete old, unimportant messages (`dry_run` only counts them); with no body
    (cron's `curl -X POST`), by each tenant's policy."""
    params = service.RetentionParams(**(body or RetentionRequest()).model_dump())
    report = await service.run_retention(session, params, settings=settings, actor=admin)
    return RetentionResponse.model_validate(report)
