"""The tenant limit as a route dependency: the tenant is known once the API key is looked up.

Every request to a tenant route counts against the tenant it acts for, whatever the key: a
tenant-bound key's own tenant; for a service key, an admin key or the keyless development mode,
the `tenant_id` the request names (in the query string, or in the JSON body FastAPI has already
read for the route). Routes under /v1/admin act on the service rather than for a tenant and count
against the per-address limit only, so an operator can always change a throttled tenant's policy.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute

from memory_layer.auth.deps import PrincipalDep
from memory_layer.kit.http.strict_input import is_json
from memory_layer.kit.schemas import IDENTIFIER_PATTERN
from memory_layer.policies.deps import policies_of
from memory_layer.ratelimit.middleware import record_verdict
from memory_layer.ratelimit.service import LimitScope, RateLimited, RateLimiter, tenant_limit_for

ADMIN_PREFIX = "/v1/admin/"
_TENANT = re.compile(IDENTIFIER_PATTERN)


async def named_tenant(request: Request) -> str | None:
    """The `tenant_id` a request names: its query string's, else its JSON body's (read only when
    the route takes a JSON body, which FastAPI has parsed and kept before any dependency runs, so
    this never reads a streamed body); None when it names none or one no route accepts."""
    named: Any = request.query_params.get("tenant_id")
    if named is None:
        route = request.scope.get("route")
        if (
            isinstance(route, APIRoute)
            and route.body_field is not None
            and is_json(request.headers.get("content-type"))
            and await request.body()  # kept by FastAPI; an empty body is the route's 422
        ):
            body = await request.json()
            if isinstance(body, dict):
                named = body.get("tenant_id")
    if isinstance(named, str) and _TENANT.fullmatch(named):
        return named
    return None


async def enforce_tenant_limit(request: Request, principal: PrincipalDep) -> None:
    """Count the request against the limit of the tenant it acts for; 429 rate_limited past it."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None or request.url.path.startswith(ADMIN_PREFIX):
        return
    tenant_id = principal.tenant_id or await named_tenant(request)
    if tenant_id is None:  # the route answers 422 tenant_required (or validation_error)
        return
    items = await tenant_limit_for(policies_of(request), tenant_id)
    try:
        verdict = await limiter.hit(LimitScope.tenant, tenant_id, items)
    except RateLimited as exc:
        record_verdict(request.scope, exc.verdict)
        raise
    if verdict is not None:
        record_verdict(request.scope, verdict)


TenantRateLimit = Depends(enforce_tenant_limit)
