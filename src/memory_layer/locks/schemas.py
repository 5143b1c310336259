"""Schemas of the lock routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict

from memory_layer.kit.schemas import Identifier, JSONBody, json_number

# A lock's name: like other identifiers, without "/" (it is one path segment).
LOCK_NAME_PATTERN = r"^[A-Za-z0-9_.:@+=-]{1,128}$"
MAX_TTL_SECONDS = 86_400.0
MAX_WAIT_SECONDS = 60.0

Seconds = Annotated[float, Strict(False), BeforeValidator(json_number)]


class LockScopeRequest(BaseModel):
    """The tenant a lock route acts for (query string)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = Field(
        default=None, description="Required unless the API key is bound to a tenant."
    )


class LockAcquire(JSONBody):
    """A lease to take, and how long to wait for it."""

    ttl_seconds: Seconds = Field(
        ge=0.1, le=MAX_TTL_SECONDS,
        description="The lease: the lock frees itself this many seconds after the grant unless "
        "extended (PATCH) or released (DELETE) first.",
    )
    wait_seconds: Seconds = Field(
        default=0.0, ge=0.0, le=MAX_WAIT_SECONDS,
        description="Wait up to this long for a held lock (woken by its release or its lease's "
        "end, never by polling); 0: answer 423 at once.",
    )


class LockExtend(JSONBody):
    """The new lease, counted from now."""

    ttl_seconds: Seconds = Field(ge=0.1, le=MAX_TTL_SECONDS, description="The lease from now on.")


class LockRead(BaseModel):
    """A grant of a lock."""

    name: str
    token: str = Field(
        description="The grant's secret: send it as `Lock-Token` to release or extend the lock."
    )
    fencing_token: int = Field(
        description="Grows with every grant of this lock name: pass it to whatever the holder "
        "writes to, which refuses a number lower than the highest it has seen."
    )
    acquired_at: datetime
    expires_at: datetime = Field(description="The lease's end, unless extended.")
