"""Schemas of the transfer routes; the line format itself is `format.ExportedMessage`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from memory_layer.transfer.format import ExportedMessage

__all__ = ["ExportedMessage", "ImportFailure", "ImportFailureDetail", "ImportResponse"]


class ImportResponse(BaseModel):
    """What an import stored; every line through `stored_through_line` is committed."""

    lines_read: int = Field(description="Lines in the body, blank lines included.")
    stored: int = Field(description="Messages written by this import.")
    skipped: int = Field(description="Lines whose message_id the tenant already had.")
    conflicts: int = Field(
        description="Lines not stored because another message of the tenant already holds their "
        "client_message_id."
    )
    vectors_reused: int = Field(
        description="Stored messages whose line carried a vector of the service's model."
    )
    queued_for_embedding: int = Field(
        description="Stored messages queued (pending) for the embedding worker."
    )
    stored_through_line: int = Field(
        description="Every line up to this number is committed; resume after it."
    )


class ImportFailureDetail(ImportResponse):
    """Where an import stopped, and what it committed before."""

    line: int = Field(description="The line that stopped the import (1-based).")
    message: str
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Schema errors of the line, one per offending field."
    )


class ImportFailure(BaseModel):
    """A stopped import: `detail` names the line; a 413 or a request error has the usual detail."""

    error: str = Field(examples=["invalid_line"])
    detail: ImportFailureDetail | str | list[dict[str, Any]]
