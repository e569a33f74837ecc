"""Throttle counts, reserved atomically: counting a key's attempts in the window and adding the
new attempt are one step, so of many concurrent attempts no more than the limit find room.

A reservation is committed at once, in a short transaction of its own, before the attempt is
evaluated (a password hash takes a while): concurrent attempts see it, and no lock is held
while the hash is computed. These transactions run on a small pool of their own, so a request
that holds a connection never waits for another from the pool it holds one of.

- PostgreSQL: a transaction-level advisory lock per key, then count and insert.
- SQLite: ``BEGIN IMMEDIATE`` takes the database's one write lock before counting. When the
  request's own transaction already writes (it holds that lock: an API token's use is recorded
  first), the reservation is made in that transaction instead, since another connection would
  wait for it; it is then kept only if the request commits (failed attempts do).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from conduit.clock import new_id, now
from conduit.storage.database import database_of
from conduit.storage.models import AuthAttempt

_LOCK_NAMESPACE = int.from_bytes(b"thrt", "big", signed=True)  # first key of pg_advisory_xact_lock(int, int)


@dataclass(frozen=True)
class Reserved:
    """The attempt is counted under every key (its rows' ids) until released."""

    ids: tuple[str, ...]


@dataclass(frozen=True)
class Refused:
    """Some key is at its limit; it has room again in ``retry_after`` seconds. Nothing was counted."""

    retry_after: int


async def reserve(session: AsyncSession, keys: Sequence[str], *, limit: int, window: timedelta) -> Reserved | Refused:
    """Count one attempt under every key, unless any key already has ``limit`` in the window."""
    database = database_of(session)
    assert database is not None, "sessions come from a Database (conduit.storage.database)"
    if database.dialect == "sqlite" and await _writing(session):
        return await _count_and_add(session, keys, limit=limit, window=window)
    async with database.reservations.begin() as connection:
        if database.dialect == "postgresql":
            for lock in sorted({_lock_id(key) for key in keys}):  # one order everywhere: no deadlock
                await connection.execute(text("SELECT pg_advisory_xact_lock(:namespace, :lock)"),
                                         {"namespace": _LOCK_NAMESPACE, "lock": lock})
        return await _count_and_add(connection, keys, limit=limit, window=window)


async def release(session: AsyncSession, reservation: Reserved) -> None:
    """Uncount a reserved attempt (it succeeded), in the request's transaction."""
    await session.execute(delete(AuthAttempt).where(AuthAttempt.id.in_(reservation.ids))
                          .execution_options(synchronize_session=False))


async def purge(session: AsyncSession, *, before: datetime) -> None:
    await session.execute(delete(AuthAttempt).where(AuthAttempt.created_at < before))


async def _count_and_add(db: AsyncConnection | AsyncSession, keys: Sequence[str], *, limit: int,
                         window: timedelta) -> Reserved | Refused:
    at = now()
    since = at - window
    worst: int | None = None
    for key in keys:
        in_window = (AuthAttempt.key == key, AuthAttempt.created_at > since)
        if (await db.scalar(select(func.count()).select_from(AuthAttempt).where(*in_window)) or 0) < limit:
            continue
        # The key has room again once its limit-th newest attempt leaves the window.
        freed_by = await db.scalar(select(AuthAttempt.created_at).where(*in_window)
                                   .order_by(AuthAttempt.created_at.desc()).offset(limit - 1).limit(1))
        assert freed_by is not None
        wait = int((freed_by + window - at).total_seconds()) + 1
        worst = max(worst or 0, wait)
    if worst is not None:
        return Refused(retry_after=worst)
    ids = tuple(new_id("att") for _ in keys)
    await db.execute(insert(AuthAttempt), [{"id": id_, "key": key, "created_at": at}
                                           for id_, key in zip(ids, keys, strict=True)])
    return Reserved(ids=ids)


async def _writing(session: AsyncSession) -> bool:
    """Whether the session's SQLite connection has a write transaction open (and so the lock)."""
    if not session.in_transaction():
        return False  # no connection yet
    raw = await (await session.connection()).get_raw_connection()
    return bool(raw.driver_connection is not None and raw.driver_connection.in_transaction)


def _lock_id(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[:4], "big", signed=True)
