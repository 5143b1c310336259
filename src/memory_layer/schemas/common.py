"""Field types shared by several schemas."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

# Identifiers clients choose: printable, no spaces or control characters, at most 128 characters.
IDENTIFIER_PATTERN = r"^[\w.:@/+=-]{1,128}$"
Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN, examples=["my-app"])]


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx body: a stable code to branch on and a human-readable detail."""

    error: str = Field(examples=["tenant_mismatch"])
    detail: object = Field(examples=["this API key may only act for tenant 'acme'"])
