"""SQL of the health checks."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def ping(connection: AsyncConnection) -> None:
    """One round trip to the database."""
    await connection.execute(text("SELECT 1"))
