"""The NDJSON line format of exports and imports: one `ExportedMessage` per line.

It is the file format shared by `GET /v1/export`, `POST /v1/import` and the `memory-layer
export|import` commands, so the service, the routes and the CLI all use this one model.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, Strict

from memory_layer.kit.schemas import Identifier, NonBlankText, Timestamp
from memory_layer.models.message import Kind, Role
from memory_layer.models.policy import PiiKind

# The largest magnitude a pgvector component (a 4-byte float) holds.
FLOAT4_MAX = 3.4028234663852886e38

MEDIA_TYPE = "application/x-ndjson"


class ExportedMessage(BaseModel):
    """One message of an export, and one line of an import: UTF-8 JSON on a single line."""

    # Unknown fields are refused rather than dropped: an import never loses data silently.
    model_config = ConfigDict(extra="forbid")

    message_id: uuid.UUID = Field(
        description="Kept on import: importing the same line again stores nothing new."
    )
    client_message_id: Identifier | None = None
    conversation_id: Identifier
    user_id: Identifier | None = None
    role: Role
    kind: Kind = Kind.message
    content: NonBlankText
    metadata: dict[str, Any] = Field(default_factory=dict)
    importance: float = Field(ge=0.0, le=1.0)
    created_at: Timestamp = Field(description="Kept on import.")
    archived_at: Timestamp | None = Field(default=None, description="Kept on import.")
    expires_at: Timestamp | None = Field(
        default=None,
        description="Kept on import (an export holds no expired message; a line that has expired "
        "since is stored and never read, until retention deletes it).",
    )
    pii_kinds: list[Annotated[PiiKind, Strict(False)]] = Field(
        default_factory=list,
        description="Kinds of personal data found in the content. On import, a tenant whose PII "
        "mode is not off screens the content again and records what it finds instead.",
    )
    embedding_model: str | None = Field(
        default=None, max_length=128, description="The model that made `embedding`."
    )
    embedding: list[FiniteFloat] | None = Field(
        default=None,
        description="Only with `include_embeddings=true` (null for a message not embedded yet). "
        "An import reuses it when `embedding_model` is the service's model and the dimension "
        "matches; otherwise the message is queued for the embedding worker.",
        # The import refuses larger components (`invalid_embedding`); documented here.
        json_schema_extra={"items": {"minimum": -FLOAT4_MAX, "maximum": FLOAT4_MAX}},
    )
