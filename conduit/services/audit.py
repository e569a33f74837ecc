"""The account's audit log: one entry per security-relevant action, in the action's transaction."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from conduit.clock import new_id, now
from conduit.storage.models import AuditEntry


def record(session: AsyncSession | Session, account_id: str, action: str, *, ip: str = "", **details: Any) -> None:
    """Add an entry to the caller's transaction (async or sync session); ``details`` become its
    metadata and must never hold a secret."""
    session.add(AuditEntry(id=new_id("aud"), account_id=account_id, action=action, ip=ip,
                           details=details, created_at=now()))


async def list_entries(session: AsyncSession, account_id: str, *, limit: int) -> list[AuditEntry]:
    rows = await session.scalars(
        select(AuditEntry).where(AuditEntry.account_id == account_id)
        .order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc()).limit(limit)
    )
    return list(rows)


async def purge(session: AsyncSession, *, older_than_days: int) -> int:
    cutoff = now() - timedelta(days=older_than_days)
    result = cast(CursorResult[Any], await session.execute(delete(AuditEntry).where(AuditEntry.created_at < cutoff)))
    return result.rowcount or 0
