"""The tenant policies of one request as a dependency (FastAPI resolves it once per request, so
the rate limiter and the route that writes share one read of the policy)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from memory_layer.kit.db.session import ReadSessionmakerDep
from memory_layer.kit.http.deps import SettingsDep
from memory_layer.policies.service import RequestPolicies


async def get_request_policies(
    read_sessionmaker: ReadSessionmakerDep, settings: SettingsDep
) -> RequestPolicies:
    return RequestPolicies(read_sessionmaker, settings)


RequestPoliciesDep = Annotated[RequestPolicies, Depends(get_request_policies)]
