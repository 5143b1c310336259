"""Run routes: create, update, list and delete flow runs; write and read task outputs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from memory_layer.auth.deps import READ, WRITE, CallerDep, ReadCallerDep
from memory_layer.kit.http.deps import CursorCodecDep, SettingsDep
from memory_layer.kit.schemas import error_responses
from memory_layer.models.run import Run, RunStatus, RunTaskOutput
from memory_layer.policies.deps import RequestPoliciesDep
from memory_layer.runs import service
from memory_layer.runs.schemas import (
    RunCreate,
    RunListRequest,
    RunListResponse,
    RunPatch,
    RunRead,
    RunScopeRequest,
    TaskOutputPut,
    TaskOutputRead,
)

router = APIRouter(prefix="/v1/runs", tags=["runs"])

RunId = Annotated[uuid.UUID, Path(description="The run's id (`run_id` of its creation).")]
# An identifier without "/" (one path segment).
TASK_ID_PATTERN = r"^[A-Za-z0-9_.:@+=-]{1,128}$"
TaskId = Annotated[
    str,
    Path(
        pattern=TASK_ID_PATTERN,
        max_length=128,
        description="The task's id, chosen by the client: letters, digits and `_.:@+=-`.",
    ),
]
Scope = Annotated[RunScopeRequest, Query()]
OUTPUT = "/{run_id}/tasks/{task_id}/output"


def _read(run: Run) -> RunRead:
    return RunRead(
        run_id=run.id,
        flow_name=run.flow_name,
        status=RunStatus(run.status),
        parameters=run.parameters,
        created_at=run.created_at,
        updated_at=run.updated_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


def _output(output: RunTaskOutput) -> TaskOutputRead:
    return TaskOutputRead(
        run_id=output.run_id,
        task_id=output.task_id,
        output=output.output,
        output_bytes=output.output_bytes,
        created_at=output.created_at,
        updated_at=output.updated_at,
    )


@router.post(
    "",
    response_model=RunRead,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 403, 409, 422, 503),
    dependencies=[WRITE],
)
async def create_run(
    body: RunCreate, caller: CallerDep, settings: SettingsDep, policies: RequestPoliciesDep
) -> RunRead:
    """Record a new run of a flow; answers its `run_id` (409 `quota_exceeded` past a quota)."""
    tenant_id = caller.tenant(body.tenant_id)
    run = await service.create_run(
        caller.session,
        tenant_id,
        service.NewRun(
            flow_name=body.flow_name,
            status=body.status,
            parameters=body.parameters,
            started_at=body.started_at,
            finished_at=body.finished_at,
        ),
        policy=await policies.get(tenant_id),
        max_parameters_bytes=settings.max_metadata_bytes,
    )
    return _read(run)


@router.get("", response_model=RunListResponse, responses=error_responses(400, 401, 403, 422, 503),
            dependencies=[READ])
async def list_runs(
    query: Annotated[RunListRequest, Query()], caller: ReadCallerDep, cursors: CursorCodecDep
) -> RunListResponse:
    """The tenant's runs by flow, status and creation time, newest first, a page at a time."""
    page = await service.list_runs(
        caller.session,
        caller.tenant(query.tenant_id),
        service.RunQuery(**query.model_dump(exclude={"tenant_id"})),
        cursors=cursors,
    )
    return RunListResponse(items=[_read(run) for run in page.items], next_cursor=page.next_cursor)


@router.get(
    "/{run_id}",
    response_model=RunRead,
    responses=error_responses(401, 403, 404, 422, 503),
    dependencies=[READ],
)
async def get_run(run_id: RunId, query: Scope, caller: ReadCallerDep) -> RunRead:
    """One run."""
    return _read(await service.get_run(caller.session, caller.tenant(query.tenant_id), run_id))


@router.patch(
    "/{run_id}",
    response_model=RunRead,
    responses=error_responses(401, 403, 404, 409, 422, 503),
    dependencies=[WRITE],
)
async def update_run(run_id: RunId, body: RunPatch, query: Scope, caller: CallerDep) -> RunRead:
    """Change a run's status (409 `invalid_transition` out of a final status); reaching a final
    status sets `finished_at`."""
    run = await service.update_status(
        caller.session,
        caller.tenant(query.tenant_id),
        run_id,
        body.status,
        started_at=body.started_at,
        finished_at=body.finished_at,
    )
    return _read(run)


@router.delete(
    "/{run_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403, 404, 422, 503),
    dependencies=[WRITE],
)
async def delete_run(run_id: RunId, query: Scope, caller: CallerDep) -> None:
    """Delete a run and its task outputs (not undoable)."""
    await service.delete_run(caller.session, caller.tenant(query.tenant_id), run_id)


@router.put(
    OUTPUT,
    response_model=TaskOutputRead,
    responses={
        **error_responses(401, 403, 404, 409, 413, 422, 503),
        200: {"description": "Replaced, or the same output was already stored (nothing changed)."},
        201: {"model": TaskOutputRead, "description": "Created."},
    },
    dependencies=[WRITE],
)
async def put_task_output(
    run_id: RunId,
    task_id: TaskId,
    body: TaskOutputPut,
    query: Scope,
    caller: CallerDep,
    settings: SettingsDep,
    policies: RequestPoliciesDep,
    response: Response,
) -> TaskOutputRead:
    """Store a task's JSON output: 201 created, 200 replaced or unchanged (idempotent); 409
    `run_finished` for a different output of a final run."""
    tenant_id = caller.tenant(query.tenant_id)
    stored, created = await service.put_output(
        caller.session,
        tenant_id,
        run_id,
        task_id,
        body.output,
        policy=await policies.get(tenant_id),
        max_bytes=settings.max_task_output_bytes,
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return _output(stored)


@router.get(
    OUTPUT,
    response_model=TaskOutputRead,
    responses=error_responses(401, 403, 404, 422, 503),
    dependencies=[READ],
)
async def get_task_output(
    run_id: RunId, task_id: TaskId, query: Scope, caller: ReadCallerDep
) -> TaskOutputRead:
    """A task's stored output (404 `run_not_found` or `output_not_found`)."""
    output = await service.get_output(
        caller.session, caller.tenant(query.tenant_id), run_id, task_id
    )
    return _output(output)
