"""Periodic clean-up: audit entries and delivery logs past retention, raw messages no job needs,
stale throttle counts, dead tokens."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, or_
from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import now
from conduit.config import Settings
from conduit.db.models import DeliveryLog, OneTimeToken, RefreshToken
from conduit.delivery import queue
from conduit.services import audit, throttle


async def purge_expired(session: AsyncSession, *, settings: Settings) -> None:
    await audit.purge(session, older_than_days=settings.audit_retention_days)
    await session.execute(delete(DeliveryLog).where(
        DeliveryLog.attempted_at < now() - timedelta(days=settings.log_retention_days)))
    await session.run_sync(queue.purge_finished_messages, keep_days=settings.keep_raw_days)
    await throttle.purge(session, older_than=timedelta(days=1))
    await session.execute(delete(OneTimeToken).where(OneTimeToken.expires_at < now() - timedelta(days=1)))
    await session.execute(delete(RefreshToken).where(or_(
        RefreshToken.expires_at < now(), RefreshToken.revoked_at < now() - timedelta(days=30))))
