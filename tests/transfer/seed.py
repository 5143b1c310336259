"""Messages written straight into the table (every kind, role and timestamp an export must keep)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.embeddings.providers.fake import FakeEmbeddingProvider
from memory_layer.kit.db.vectors import vector_param

FAKE = FakeEmbeddingProvider(384)
MODEL = FAKE.model_name
BASE = datetime(2026, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)

INSERT = text("""
INSERT INTO messages (tenant_id, id, conversation_id, user_id, role, kind, content, metadata,
    importance, created_at, archived_at, client_message_id, embedding, embedding_model,
    embedding_status, embedding_next_attempt_at)
VALUES (:tenant_id, :id, :conversation_id, :user_id, :role, :kind, :content,
    CAST(:metadata AS jsonb), :importance, :created_at, :archived_at, :client_message_id,
    :embedding, :embedding_model, :status, :due)
""").bindparams(vector_param("embedding"))


async def insert_message(
    engine: AsyncEngine,
    tenant: str,
    content: str,
    *,
    conversation_id: str = "c-1",
    user_id: str | None = None,
    role: str = "user",
    kind: str = "message",
    metadata: dict[str, Any] | None = None,
    importance: float = 0.5,
    created_at: datetime = BASE,
    archived_at: datetime | None = None,
    client_message_id: str | None = None,
    model: str | None = MODEL,
) -> uuid.UUID:
    """One message; `model` None stores it pending (no vector), else with the fake vector."""
    message_id = uuid.uuid4()
    async with engine.begin() as connection:
        await connection.execute(
            INSERT,
            {
                "tenant_id": tenant, "id": message_id, "conversation_id": conversation_id,
                "user_id": user_id, "role": role, "kind": kind, "content": content,
                "metadata": json.dumps(metadata or {}), "importance": importance,
                "created_at": created_at, "archived_at": archived_at,
                "client_message_id": client_message_id,
                "embedding": None if model is None else FAKE.embed_sync(content),
                "embedding_model": model,
                "status": "pending" if model is None else "ready",
                "due": datetime.now(UTC) if model is None else None,
            },
        )
    return message_id


async def seed_varied(engine: AsyncEngine, tenant: str) -> list[uuid.UUID]:
    """Seven messages covering roles, kinds, metadata, archived, pending and another model's
    vector; two share a created_at (the export orders those by id). Ids in export order."""
    minute = timedelta(minutes=1)
    ids = [
        await insert_message(
            engine, tenant, "I love Python programming", user_id="u-1", client_message_id="cm-1",
            metadata={"channel": "web", "nested": {"a": [1, 2.5, None, True]}, "text": "héllo 🌍"},
            importance=0.7,
        ),
        await insert_message(
            engine, tenant, "Summary: the user likes Python", role="assistant", kind="summary",
            created_at=BASE + minute, importance=0.9,
        ),
        await insert_message(
            engine, tenant, "The user's timezone is Europe/Paris", role="system", kind="fact",
            conversation_id="c-2", user_id="u-2", created_at=BASE + 2 * minute,
            archived_at=BASE + 30 * minute,
        ),
        await insert_message(
            engine, tenant, 'tool said:\nline "two"\tand a tab', role="tool", kind="procedure",
            conversation_id="c-2", created_at=BASE + 3 * minute, model=None,
        ),
        await insert_message(
            engine, tenant, "Prefers short answers", kind="preference", conversation_id="c-3",
            user_id="u-1", created_at=BASE + 4 * minute, model="legacy-model-384",
        ),
    ]
    same = BASE + 5 * minute
    twins = sorted(
        [
            await insert_message(engine, tenant, "twin one", kind="event", created_at=same),
            await insert_message(engine, tenant, "twin two", kind="event", created_at=same),
        ]
    )
    return ids + twins
