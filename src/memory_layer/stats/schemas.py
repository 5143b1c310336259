"""Schemas of the stats route."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from memory_layer.kit.schemas import Identifier


class StatsRequest(BaseModel):
    """Whose messages to count (query string)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: Identifier | None = Field(
        default=None, description="Required unless the API key is bound to a tenant."
    )
    user_id: Identifier | None = Field(default=None, description="Only this user's messages.")
    conversation_id: Identifier | None = Field(
        default=None, description="Only this conversation's messages."
    )
    channel: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9_]*$", max_length=50,
        description="Only this channel's messages (content_bytes counts no encrypted text).",
    )


class StatsResponse(BaseModel):
    """What is stored: every message in scope, archived ones included."""

    model_config = ConfigDict(from_attributes=True)

    tenant_id: str
    user_id: str | None
    conversation_id: str | None
    messages: int
    archived: int = Field(description="How many of the messages are archived.")
    by_role: dict[str, int] = Field(description="Messages per role; every role is listed.")
    by_kind: dict[str, int] = Field(description="Messages per kind; every kind is listed.")
    by_embedding_status: dict[str, int] = Field(
        description="Messages per embedding status (pending, ready, failed)."
    )
    conversations: int = Field(description="Distinct conversation ids.")
    users: int = Field(description="Distinct non-null user ids.")
    content_bytes: int = Field(description="Sum of the content's size in UTF-8 bytes (octet_length).")
    oldest_message_at: datetime | None = Field(description="null when nothing is stored.")
    newest_message_at: datetime | None = Field(description="null when nothing is stored.")


class PoolRead(BaseModel):
    """This process's database pool (each API process has its own)."""

    model_config = ConfigDict(from_attributes=True)

    size: int = Field(description="Connections kept open (MEMORY_DB_POOL_SIZE).")
    max_connections: int = Field(description="With overflow (+ MEMORY_DB_MAX_OVERFLOW).")
    in_use: int
    idle: int


class RedisMemoryRead(BaseModel):
    """Redis's INFO memory."""

    model_config = ConfigDict(from_attributes=True)

    used_memory_bytes: int
    used_memory_peak_bytes: int
    maxmemory_bytes: int = Field(description="0: no limit.")


class StoreStatsResponse(BaseModel):
    """The whole store at a glance (admin)."""

    model_config = ConfigDict(from_attributes=True)

    totals: dict[str, int] = Field(
        description="Counts across every tenant, one key per total: messages, messages_pending, "
        "messages_ready, messages_failed, messages_archived, conversations, tenants (that store "
        "messages), content_bytes; runs, runs_active (not final); events (appended to conversations' "
        "streams); locks_held (leases not over)."
    )
    database_bytes: int = Field(description="The database's size on disk (pg_database_size).")
    pool: PoolRead | None = Field(description="This process's database pool; null without one.")
    redis: RedisMemoryRead | None = Field(
        description="Redis memory; null without MEMORY_REDIS_URL or when Redis did not answer."
    )
    redis_error: str | None = Field(description="Why Redis did not answer; null otherwise.")
