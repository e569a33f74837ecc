"""Sliding-window throttling of authentication attempts, counted in the database.

A key is what is being limited ("signin:email:a@b.c", "signin:ip:192.0.2.1", ...). Once a key
has ``limit`` counted attempts in the window, further attempts get Throttled with the
number of seconds until the oldest of them leaves the window.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import new_id, now
from conduit.db.models import AuthAttempt
from conduit.errors import Throttled


@dataclass(frozen=True)
class Limit:
    limit: int
    window: timedelta


SIGN_IN = Limit(10, timedelta(minutes=15))
TOTP = Limit(10, timedelta(minutes=15))
RESET_PER_EMAIL = Limit(3, timedelta(minutes=15))
RESET_PER_IP = Limit(10, timedelta(minutes=15))
KEY_MAX = 400  # AuthAttempt.key; keys embed what a caller typed (an email as given), so may be longer


def _stored(key: str) -> str:
    """The key as stored: itself, or its digest when it is too long for the column."""
    if len(key) <= KEY_MAX:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


async def retry_after(session: AsyncSession, keys: list[str], rule: Limit) -> int | None:
    """Seconds to wait if any key is over its limit, else None."""
    since = now() - rule.window
    worst: int | None = None
    for key in map(_stored, keys):
        attempts = await session.scalar(
            select(func.count()).where(AuthAttempt.key == key, AuthAttempt.created_at > since)
        )
        if attempts >= rule.limit:
            # The key is free again once its limit-th newest attempt leaves the window.
            oldest_at = (await session.scalars(
                select(AuthAttempt.created_at).where(AuthAttempt.key == key, AuthAttempt.created_at > since)
                .order_by(AuthAttempt.created_at.desc()).offset(rule.limit - 1).limit(1)
            )).one()
            wait = int((oldest_at + rule.window - now()).total_seconds()) + 1
            worst = max(worst or 0, wait)
    return worst


async def check(session: AsyncSession, keys: list[str], rule: Limit, *, what: str) -> None:
    """Raise Throttled when any key is over the limit."""
    wait = await retry_after(session, keys, rule)
    if wait is not None:
        raise Throttled(f"Too many {what}; try again in {wait} seconds.", retry_after=wait)


async def count(session: AsyncSession, keys: list[str]) -> None:
    at = now()
    session.add_all(AuthAttempt(id=new_id("att"), key=_stored(key), created_at=at) for key in keys)


async def purge(session: AsyncSession, *, older_than: timedelta) -> None:
    await session.execute(delete(AuthAttempt).where(AuthAttempt.created_at < now() - older_than))
