"""Ingestion: validate, score importance, embed and store a message (idempotently)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.config import Settings
from memory_layer.embeddings.providers.base import EmbeddingProvider
from memory_layer.embeddings.service import embed_or_defer
from memory_layer.kit.errors import Conflict, InvalidInput, NotFound
from memory_layer.kit.observability.metrics import Metrics
from memory_layer.messages.importance import importance_for
from memory_layer.messages.repository import MessageRepository
from memory_layer.models.message import EmbeddingStatus, Message, Role

# Client clocks drift; anything further ahead than this is a bug on their side, not an import.
MAX_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class NewMessage:
    """A message to store, as the service sees it (the HTTP schema, the CLI or an import)."""

    conversation_id: str
    role: Role
    content: str
    user_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    importance_override: float | None = None
    client_message_id: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class IngestResult:
    message: Message
    replayed: bool


def _check_metadata(metadata: dict[str, Any], limit: int) -> None:
    encoded = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
    if "\\u0000" in encoded:
        raise InvalidInput("metadata must not contain NUL (\\u0000) characters",
                           code="invalid_metadata")
    size = len(encoded.encode("utf-8"))
    if size > limit:
        raise InvalidInput(
            f"metadata is {size} bytes as JSON; the limit is {limit} (MEMORY_MAX_METADATA_BYTES)",
            code="metadata_too_large",
        )


def _check(data: NewMessage, settings: Settings) -> None:
    if len(data.content) > settings.max_content_chars:
        raise InvalidInput(
            f"content has {len(data.content)} characters; the limit is "
            f"{settings.max_content_chars} (MEMORY_MAX_CONTENT_CHARS). Split the message.",
            code="content_too_long",
        )
    _check_metadata(data.metadata, settings.max_metadata_bytes)
    if data.created_at is not None and data.created_at > datetime.now(UTC) + MAX_CLOCK_SKEW:
        raise InvalidInput("created_at lies in the future", code="invalid_created_at")


def _same_message(existing: Message, data: NewMessage) -> bool:
    return (
        existing.conversation_id == data.conversation_id
        and existing.role == data.role.value
        and existing.content == data.content
        and existing.user_id == data.user_id
        and existing.metadata_ == data.metadata
    )


async def ingest_message(
    session: AsyncSession,
    tenant_id: str,
    data: NewMessage,
    *,
    settings: Settings,
    embedder: EmbeddingProvider,
    metrics: Metrics,
) -> IngestResult:
    """Store one message; a retried client_message_id returns the original.

    Inline mode embeds before the transaction starts (status ready). With
    MEMORY_ASYNC_EMBEDDINGS, or when the provider fails inline, the message is committed as
    pending and the worker embeds it.
    """
    _check(data, settings)
    vector: list[float] | None = None
    error: str | None = None
    if not settings.async_embeddings:
        # First the model, then the database: no pooled connection waits in a transaction
        # while a remote provider takes its time.
        vector, failure = await embed_or_defer(data.content, embedder, metrics)
        if failure is not None:
            error = f"{failure.kind}: {failure}"

    repository = MessageRepository(session)
    if data.client_message_id is not None:
        existing = await repository.get_by_client_id(tenant_id, data.client_message_id)
        if existing is not None:
            return _replay(existing, data)

    values: dict[str, Any] = {
        "tenant_id": tenant_id,
        "id": uuid.uuid4(),
        "conversation_id": data.conversation_id,
        "user_id": data.user_id,
        "role": data.role.value,
        "content": data.content,
        "metadata_": data.metadata,
        "importance": (
            data.importance_override
            if data.importance_override is not None
            else importance_for(data.role.value, data.content)
        ),
        "client_message_id": data.client_message_id,
    }
    if vector is not None:
        values.update(
            embedding=vector,
            embedding_model=embedder.model_name,
            embedding_status=EmbeddingStatus.ready.value,
            embedded_at=datetime.now(UTC),
            embedding_next_attempt_at=None,
        )
    else:
        # The row is the worker's job; the insert trigger NOTIFYs listening workers on commit.
        values.update(embedding_status=EmbeddingStatus.pending.value, embedding_error=error)
    if data.created_at is not None:
        values["created_at"] = data.created_at
    message = await repository.insert_if_new(values)
    if message is None:
        # A concurrent retry with the same client_message_id won the race.
        assert data.client_message_id is not None
        existing = await repository.get_by_client_id(tenant_id, data.client_message_id)
        if existing is None:  # pragma: no cover - the conflicting row cannot vanish mid-transaction
            raise Conflict("idempotency race; retry the request", code="idempotency_race")
        return _replay(existing, data)
    metrics.messages_ingested.labels(role=data.role.value).inc()
    return IngestResult(message=message, replayed=False)


def _replay(existing: Message, data: NewMessage) -> IngestResult:
    if not _same_message(existing, data):
        raise Conflict(
            f"client_message_id {data.client_message_id!r} was already used for a different "
            "message in this tenant",
            code="idempotency_key_reused",
        )
    return IngestResult(message=existing, replayed=True)


async def get_message(session: AsyncSession, tenant_id: str, message_id: uuid.UUID) -> Message:
    """One message of the tenant, or 404."""
    message = await MessageRepository(session).get(tenant_id, message_id)
    if message is None:
        raise NotFound(f"no message {message_id} in tenant {tenant_id!r}", code="message_not_found")
    return message
