"""The delivery queue: jobs are rows, taken with a lease.

On PostgreSQL the claim uses ``FOR UPDATE SKIP LOCKED`` so any number of workers on any number
of machines take disjoint jobs; on SQLite the single writer serialises claims. A worker that
dies mid-delivery simply lets its lease expire: the job is taken again (at-least-once).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import new_id, now
from conduit.db.models import DeliveryJob, Message


def new_job(message_id: str, webhook_id: str, rcpt_to: str, at: datetime) -> dict[str, Any]:
    """A queued job's column values (inserted in bulk by messages.accept_batch)."""
    return {"id": new_id("job"), "message_id": message_id, "webhook_id": webhook_id, "rcpt_to": rcpt_to,
            "status": "queued", "attempts": 0, "next_attempt_at": at, "created_at": at}


def enqueue(session: AsyncSession, message: Message, targets: Iterable[tuple[str, str]]) -> list[DeliveryJob]:
    """Add one job per (webhook_id, rcpt_to) for a stored message, in the caller's transaction."""
    at = now()
    jobs = [DeliveryJob(**new_job(message.id, webhook_id, rcpt, at)) for webhook_id, rcpt in targets]
    session.add_all(jobs)
    return jobs


async def claim(session: AsyncSession, *, limit: int, lease: timedelta) -> list[DeliveryJob]:
    """Take up to ``limit`` due jobs: lease them and count the attempt."""
    at = now()
    due = (select(DeliveryJob.id)
           .where(DeliveryJob.status == "queued", DeliveryJob.next_attempt_at <= at,
                  or_(DeliveryJob.locked_until.is_(None), DeliveryJob.locked_until < at))
           .order_by(DeliveryJob.next_attempt_at).limit(limit))
    if session.bind.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    result = await session.scalars(
        update(DeliveryJob).where(DeliveryJob.id.in_(due.scalar_subquery()))
        .values(locked_until=at + lease, attempts=DeliveryJob.attempts + 1)
        .returning(DeliveryJob).execution_options(synchronize_session=False))
    return list(result)


async def next_due_at(session: AsyncSession) -> datetime | None:
    """When the earliest queued job that no worker holds becomes due (for the worker's sleep)."""
    return await session.scalar(select(DeliveryJob.next_attempt_at)
                                .where(DeliveryJob.status == "queued", DeliveryJob.locked_until.is_(None))
                                .order_by(DeliveryJob.next_attempt_at).limit(1))


async def still_held(session: AsyncSession, jobs: Sequence[DeliveryJob]) -> set[str]:
    """The ids of ``jobs`` still under the lease they were claimed with, locked until the caller
    commits. A job missing here was taken over by another worker after its lease ran out: that
    worker records it, so this one must not (else one delivery is logged twice)."""
    if not jobs:
        return set()
    leases = or_(*[and_(DeliveryJob.id == job.id, DeliveryJob.locked_until == job.locked_until) for job in jobs])
    return set(await session.scalars(select(DeliveryJob.id).where(DeliveryJob.status == "queued", leases)
                                     .with_for_update()))


async def finish_many(session: AsyncSession, jobs: Sequence[DeliveryJob], *, status: str, error: str = "",
                      keep_raw: bool) -> None:
    """Mark jobs delivered or failed; drop each raw message once no job needs it."""
    await session.execute(update(DeliveryJob).where(DeliveryJob.id.in_([job.id for job in jobs])).values(
        status=status, finished_at=now(), locked_until=None, last_error=error[:2000]))
    if not keep_raw:
        await drop_finished_messages(session, {job.message_id for job in jobs})


async def retry_later(session: AsyncSession, job: DeliveryJob, *, delay: float, error: str,
                      count_attempt: bool = True) -> None:
    """Put the job back for another attempt after ``delay`` seconds (rate limits don't count as attempts)."""
    values = {"next_attempt_at": now() + timedelta(seconds=delay), "locked_until": None, "last_error": error[:2000]}
    if not count_attempt:
        values["attempts"] = DeliveryJob.attempts - 1
    await session.execute(update(DeliveryJob).where(DeliveryJob.id == job.id).values(**values))


async def drop_finished_messages(session: AsyncSession, message_ids: Iterable[str]) -> None:
    still_needed = exists().where(DeliveryJob.message_id == Message.id, DeliveryJob.status == "queued")
    await session.execute(delete(Message).where(Message.id.in_(list(message_ids)), ~still_needed))


async def purge_finished_messages(session: AsyncSession, *, keep_days: int) -> None:
    """Periodic: raw messages whose jobs are all finished and that are past the keep period."""
    cutoff = now() - timedelta(days=keep_days)
    still_needed = exists().where(and_(DeliveryJob.message_id == Message.id, DeliveryJob.status == "queued"))
    await session.execute(delete(Message).where(Message.received_at < cutoff, ~still_needed))
