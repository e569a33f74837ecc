"""Sliding-window throttling of authentication attempts, counted in the database.

A key is what is being limited ("signin:email:a@b.c", "signin:ip:192.0.2.1", ...). An attempt
is counted under its keys *before* it is evaluated (``reserve``), in one atomic step with the
check, so concurrent attempts cannot all slip under the limit; a successful attempt is then
uncounted (``release``), so only failures count. Once a key has ``limit`` counted attempts in
the window, further attempts get Throttled with the number of seconds until the oldest of them
leaves the window.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import now
from conduit.errors import Throttled
from conduit.storage import throttle_store

Reservation = throttle_store.Reserved


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


async def try_reserve(session: AsyncSession, keys: list[str], rule: Limit) -> Reservation | int:
    """Count one attempt under every key: its reservation, or the seconds to wait when any key is
    at its limit (then nothing is counted)."""
    outcome = await throttle_store.reserve(session, [_stored(key) for key in keys], limit=rule.limit,
                                           window=rule.window)
    return outcome.retry_after if isinstance(outcome, throttle_store.Refused) else outcome


async def reserve(session: AsyncSession, keys: list[str], rule: Limit, *, what: str) -> Reservation:
    """Count one attempt under every key, or raise Throttled when any key is at its limit.

    The attempt stays counted, as a failure, unless it is released.
    """
    outcome = await try_reserve(session, keys, rule)
    if isinstance(outcome, int):
        raise Throttled(f"Too many {what}; try again in {outcome} seconds.", retry_after=outcome)
    return outcome


async def release(session: AsyncSession, reservation: Reservation) -> None:
    """The attempt succeeded: it no longer counts."""
    await throttle_store.release(session, reservation)


async def purge(session: AsyncSession, *, older_than: timedelta) -> None:
    await throttle_store.purge(session, before=now() - older_than)
