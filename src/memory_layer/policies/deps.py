"""The tenant policies of one request as a dependency (FastAPI resolves it once per request, so
the rate limiter and the route that writes share one read of the policy)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from memory_layer.kit.db.session import read_sessionmaker_of
from memory_layer.kit.http.deps import settings_of
from memory_layer.policies.service import RequestPolicies


async def get_request_policies(request: Request) -> RequestPolicies:
    return RequestPolicies(read_sessionmaker_of(request), settings_of(request))


RequestPoliciesDep = Annotated[RequestPolicies, Depends(get_request_policies)]
