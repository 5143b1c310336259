"""Scheduled retention (MEMORY_RETENTION_SCHEDULE_SECONDS > 0) inside the serving process."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from memory_layer.audit import service as audit
from memory_layer.config import Settings
from memory_layer.kit.cache import publish_writes
from memory_layer.kit.errors import Conflict
from memory_layer.retention.service import RetentionParams, run_retention

logger = logging.getLogger(__name__)


async def retention_loop(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    while True:
        await asyncio.sleep(settings.retention_schedule_seconds)
        try:
            async with sessionmaker.begin() as session:
                result = await run_retention(
                    session, RetentionParams(), settings=settings, actor=audit.SCHEDULER
                )
            await publish_writes(session)
            logger.info(
                "scheduled retention: %d archived, %d deleted, %d expired deleted",
                result.archived, result.deleted, result.expired,
            )
        except Conflict:
            logger.info("scheduled retention skipped: another run holds the lock")
        except Exception:
            logger.exception("scheduled retention failed; will retry next period")
