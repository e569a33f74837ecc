"""Periodic clean-up: audit entries, delivery logs and refusals past retention, messages past
retention that no queued job needs, stale throttle counts, dead tokens."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import delete, or_
from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import now
from conduit.config import Settings
from conduit.services import audit, throttle
from conduit.storage import refusals
from conduit.storage.database import Database
from conduit.storage.models import DeliveryLog, OneTimeToken, RefreshToken

log = logging.getLogger("conduit.maintenance")
PURGE_BATCH = 500  # messages per transaction: a backlog never holds SQLite's write lock for long


async def purge_expired(session: AsyncSession, *, settings: Settings) -> None:
    await audit.purge(session, older_than_days=settings.audit_retention_days)
    await session.execute(delete(DeliveryLog).where(
        DeliveryLog.attempted_at < now() - timedelta(days=settings.log_retention_days)))
    await refusals.purge(session, older_than=timedelta(days=settings.refusal_retention_days))
    await throttle.purge(session, older_than=timedelta(days=1))
    await session.execute(delete(OneTimeToken).where(OneTimeToken.expires_at < now() - timedelta(days=1)))
    await session.execute(delete(RefreshToken).where(or_(
        RefreshToken.expires_at < now(), RefreshToken.revoked_at < now() - timedelta(days=30))))


async def purge_messages(database: Database, *, settings: Settings, batch: int = PURGE_BATCH) -> int:
    """Drop the messages past CONDUIT_MESSAGE_RETENTION_DAYS, a batch per transaction, until none
    is left; a message a queued job still needs stays (the queue's ``purge``). Returns the count."""
    total = 0
    while True:
        dropped = await database.run(database.queue.purge, keep_days=settings.message_retention_days, limit=batch)
        total += dropped
        if dropped < batch:
            break
        await asyncio.sleep(0)  # let the SMTP server's and the worker's commits in between
    if total:
        log.info("event=messages_purged count=%d", total)
    return total
