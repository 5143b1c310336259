"""The audit trail of a tenant's own requests, as its policy's `audit_level` asks.

One dependency on every router (app.py), next to the tenant rate limit: `admin` records nothing
here (the audited services record the operators' actions themselves); `writes` records every
request of a route that needs the write scope (a message, a batch, an edit, a usage report, a
state or conversation write) as `api.write`, but for those that record an entry of their own (a
deletion, an erasure, an import); `all` also every request of a route that needs the read scope
(a read, a listing, a history, a search, a context call, an export) as `api.read`.

The entry is appended in the request's own transaction (SessionDep) after the route has
succeeded and before the session commits: a write and its entry commit together, a refused or
failed request records nothing, and a 2xx means the entry is committed. (The one route that
writes in transactions of its own, POST .../summarize, which calls the language model between
them, has its entry committed after its own commits, before the answer.) Routes under /v1/admin
are not recorded here (they act on the service, and audit their changes themselves).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import Depends, Request
from fastapi.routing import APIRoute

from memory_layer.audit import service as audit
from memory_layer.auth.deps import PrincipalDep, require_read, require_write
from memory_layer.kit.db.session import SessionDep
from memory_layer.models.policy import AuditLevel
from memory_layer.policies.deps import policies_of
from memory_layer.ratelimit.deps import ADMIN_PREFIX, named_tenant

# The path parameters that name what a request acts on, and the kind of thing each names.
TARGETS = (("message_id", "message"), ("conversation_id", "conversation"))


def _action(route: APIRoute) -> audit.AuditAction | None:
    """api.write for a route that needs the write scope, api.read for one that needs read."""
    needs = {dependency.dependency for dependency in route.dependencies}
    if require_write in needs:
        return audit.AuditAction.api_write
    if require_read in needs:
        return audit.AuditAction.api_read
    return None


def _records(level: AuditLevel, action: audit.AuditAction) -> bool:
    if action is audit.AuditAction.api_write:
        return level in (AuditLevel.writes, AuditLevel.all)
    return level is AuditLevel.all


def _target(request: Request) -> str | None:
    for name, kind in TARGETS:
        value = request.path_params.get(name)
        if value is not None:
            return f"{kind}:{value}"
    return None


async def audit_trail(
    request: Request, principal: PrincipalDep, session: SessionDep
) -> AsyncIterator[None]:
    """Record the request as its tenant's audit level asks, once the route has succeeded."""
    route = request.scope.get("route")
    action = _action(route) if isinstance(route, APIRoute) else None
    if action is None or request.url.path.startswith(ADMIN_PREFIX):
        yield
        return
    tenant_id = principal.tenant_id or await named_tenant(request)
    if tenant_id is None:  # the route answers 422 tenant_required
        yield
        return
    assert isinstance(route, APIRoute)
    notes = audit.Notes()
    token = audit.current_notes.set(notes)
    try:
        yield
    finally:
        # Torn down in another context (never seen): the variable dies with that context.
        with contextlib.suppress(ValueError):
            audit.current_notes.reset(token)
    if notes.recorded:
        return
    # Read once the route has succeeded (a refused request reads nothing more): the read the
    # tenant rate limit or the route already made for this request (RequestPolicies).
    policy = await policies_of(request).get(tenant_id)
    if not _records(policy.audit_level, action):
        return
    await audit.record(
        session,
        action,
        actor=principal,
        tenant_id=tenant_id,
        target=notes.target or _target(request),
        counts=notes.counts,
        route=f"{request.method} {route.path_format}",
    )


AuditTrail = Depends(audit_trail, scope="function")
