"""Tenant policy routes (admin): read and replace a tenant's overrides."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from memory_layer.auth.deps import AdminDep
from memory_layer.kit.db.session import SessionDep
from memory_layer.kit.http.deps import SettingsDep
from memory_layer.kit.schemas import IDENTIFIER_PATTERN, error_responses
from memory_layer.policies import service
from memory_layer.policies.schemas import PolicyRead, PolicyUpdate

router = APIRouter(prefix="/v1/admin/tenants", tags=["admin"])

TenantPath = Annotated[
    str, Path(pattern=IDENTIFIER_PATTERN, max_length=128, description="The tenant.")
]


@router.get(
    "/{tenant_id:path}/policy",
    response_model=PolicyRead,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def get_tenant_policy(
    tenant_id: TenantPath, session: SessionDep, settings: SettingsDep, _: AdminDep
) -> PolicyRead:
    """A tenant's policy: the values in force (overrides over the MEMORY_* defaults) and the
    overrides themselves."""
    view = await service.describe_policy(session, tenant_id, settings)
    return PolicyRead.model_validate(view)


@router.put(
    "/{tenant_id:path}/policy",
    response_model=PolicyRead,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def put_tenant_policy(
    tenant_id: TenantPath,
    body: PolicyUpdate,
    session: SessionDep,
    settings: SettingsDep,
    principal: AdminDep,
) -> PolicyRead:
    """Replace a tenant's overrides (null or absent fields take the default). The change applies
    from the next request on, on every replica."""
    overrides = service.PolicyOverrides(
        **body.model_dump(exclude={"retention_by_kind"}),
        retention_by_kind={
            kind: service.KindRetention(**own.model_dump())
            for kind, own in body.retention_by_kind.items()
        },
    )
    view = await service.put_policy(session, tenant_id, overrides, settings, actor=principal)
    return PolicyRead.model_validate(view)
