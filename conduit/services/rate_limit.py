"""Per-webhook rate limits: a token bucket in the database, so every worker shares it.

Deliveries are spaced evenly: the bucket holds one token, refilled at ``rate_limit`` per minute,
so a webhook never sees a burst above its rate. Excess deliveries are delayed, never dropped.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, case, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import now
from conduit.storage.models import RateBucket


async def take(session: AsyncSession, webhook_id: str, per_minute: int) -> float:
    """Take one token: 0 when granted, else the seconds until one is available."""
    at = now().timestamp()
    per_second = per_minute / 60.0
    capacity = 1.0
    refilled = RateBucket.tokens + (at - RateBucket.updated_ts) * per_second
    level = case((refilled > capacity, capacity), else_=refilled)
    granted = cast(CursorResult[Any], await session.execute(
        update(RateBucket).where(RateBucket.webhook_id == webhook_id, level >= 1)
        .values(tokens=level - 1, updated_ts=at).execution_options(synchronize_session=False)))
    if granted.rowcount == 1:
        return 0.0
    current = await session.scalar(select(level).where(RateBucket.webhook_id == webhook_id))
    if current is None:  # first delivery of this webhook: a full bucket, minus this one
        try:
            async with session.begin_nested():
                session.add(RateBucket(webhook_id=webhook_id, tokens=capacity - 1, updated_ts=at))
            return 0.0
        except IntegrityError:  # another worker created it first
            return await take(session, webhook_id, per_minute)
    return max(0.05, (1 - float(current)) / per_second)
