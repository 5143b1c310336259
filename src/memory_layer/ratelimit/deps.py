"""The tenant limit as a route dependency: the tenant is known once the API key is looked up."""

from __future__ import annotations

from fastapi import Depends, Request

from memory_layer.auth.deps import PrincipalDep
from memory_layer.policies.deps import policies_of
from memory_layer.ratelimit.middleware import record_verdict
from memory_layer.ratelimit.service import LimitScope, RateLimited, RateLimiter, tenant_limit_for


async def enforce_tenant_limit(request: Request, principal: PrincipalDep) -> None:
    """Count the request against its tenant's limit; 429 rate_limited past it.

    Keys bound to a tenant are counted; admin keys and the keyless development mode act for
    whatever tenant they name and count against the global limit only.
    """
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None or principal.tenant_id is None:
        return
    items = await tenant_limit_for(policies_of(request), principal.tenant_id)
    try:
        verdict = await limiter.hit(LimitScope.tenant, principal.tenant_id, items)
    except RateLimited as exc:
        record_verdict(request.scope, exc.verdict)
        raise
    if verdict is not None:
        record_verdict(request.scope, verdict)


TenantRateLimit = Depends(enforce_tenant_limit)
