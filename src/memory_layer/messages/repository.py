"""SQL of the messages domain: insert (idempotently) and read messages."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.models.message import Message


class MessageRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, tenant_id: str, message_id: uuid.UUID) -> Message | None:
        return await self.session.get(Message, (tenant_id, message_id))

    async def get_by_client_id(self, tenant_id: str, client_message_id: str) -> Message | None:
        result = await self.session.execute(
            select(Message).where(
                Message.tenant_id == tenant_id, Message.client_message_id == client_message_id
            )
        )
        return result.scalar_one_or_none()

    async def insert_if_new(self, values: dict[str, Any]) -> Message | None:
        """Insert a message; None when its (tenant_id, client_message_id) already exists."""
        statement = (
            insert(Message)
            .values(**values)
            .on_conflict_do_nothing(constraint="uq_messages_tenant_id_client_message_id")
            .returning(Message)
        )
        result = await self.session.execute(statement)
        message = result.scalar_one_or_none()
        await self.session.flush()
        return message
