"""The tenant policies of one request (made once per request and kept on its state, so the rate
limiter and the route that writes share one read of the policy)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from memory_layer.kit.db.session import read_sessionmaker_of
from memory_layer.kit.http.deps import settings_of
from memory_layer.kit.tenant_config import tenant_config_of
from memory_layer.policies.service import RequestPolicies


def policies_of(request: Request) -> RequestPolicies:
    """The request's RequestPolicies, made on first use and kept on the request's state, so the
    tenant rate limit and the route share one read of each policy. A plain function: the limiter
    calls it only for requests that name a tenant, and the writer without a dependency node of
    its own."""
    policies: RequestPolicies | None = getattr(request.state, "tenant_policies", None)
    if policies is None:
        policies = RequestPolicies(
            read_sessionmaker_of(request), settings_of(request),
            tenant_config_of(request.app.state),
        )
        request.state.tenant_policies = policies
    return policies


async def get_request_policies(request: Request) -> RequestPolicies:
    return policies_of(request)


RequestPoliciesDep = Annotated[RequestPolicies, Depends(get_request_policies)]
