"""The delivery queue: jobs are rows, taken with a lease.

On PostgreSQL the claim uses ``FOR UPDATE SKIP LOCKED`` so any number of workers on any number
of machines take disjoint jobs; on SQLite the single writer serialises claims. A worker that
dies mid-delivery simply lets its lease expire: the job is taken again (at-least-once).

The functions here are synchronous: the worker runs them through ``run_transaction`` (on SQLite,
a whole transaction in one trip to a thread); async code calls them with ``session.run_sync``.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (Row, Select, String, Update, and_, bindparam, delete, exists, func, or_, select, tuple_,
                        update)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from conduit.clock import new_id, now
from conduit.db import sqlite_hot
from conduit.db.base import UTCDateTime
from conduit.db.models import DeliveryJob, Message, Webhook

# A claimed job comes with its message and its webhook, as tuples with the models' columns as
# attributes (the ORM's identity map and instance loading cost more than a delivery needs).
_jobs, _messages, _webhooks = DeliveryJob.__table__, Message.__table__, Webhook.__table__
JobRow = namedtuple("JobRow", _jobs.c.keys())
MessageRow = namedtuple("MessageRow", _messages.c.keys())
WebhookRow = namedtuple("WebhookRow", _webhooks.c.keys())
Claimed = tuple[JobRow, MessageRow, WebhookRow]
Job = DeliveryJob | Row | JobRow  # a job: a row with DeliveryJob's columns as attributes
_MESSAGE_AT = len(JobRow._fields)  # where a claimed row turns from job to message
_WEBHOOK_AT = _MESSAGE_AT + len(MessageRow._fields)  # and from message to webhook


def new_job(message_id: str, webhook_id: str, rcpt_to: str, at: datetime) -> dict[str, Any]:
    """A queued job's column values, all of them (inserted in bulk by messages.accept_batch)."""
    return {"id": new_id("job"), "message_id": message_id, "webhook_id": webhook_id, "rcpt_to": rcpt_to,
            "status": "queued", "attempts": 0, "next_attempt_at": at, "locked_until": None, "created_at": at,
            "finished_at": None, "last_error": ""}


def enqueue(session: AsyncSession | Session, message: Message, targets: Iterable[tuple[str, str]]) -> list[DeliveryJob]:
    """Add one job per (webhook_id, rcpt_to) for a stored message, in the caller's transaction."""
    at = now()
    jobs = [DeliveryJob(**new_job(message.id, webhook_id, rcpt, at)) for webhook_id, rcpt in targets]
    session.add_all(jobs)
    return jobs


# The hot path's statements are Core statements on the tables, built once with bound
# parameters: no ORM compile step, no identity map, and a cache key computed once. On SQLite
# claim, finish_held and drop_finished_messages run plain SQL on the sqlite3 cursor instead
# (conduit/db/sqlite_hot.py: SQLAlchemy's work per statement held SQLite's one write lock).
# On PostgreSQL the worker's claim and its finish are one statement each, with a fixed text
# (arrays, not IN lists of varying length): a round trip each, and asyncpg's prepared statement
# is reused. The worker's transactions run one after another, so each round trip counts: the
# claim, its join and the finish with its message drop took 5-6 ms per transaction as separate
# statements with IN lists (each new length a new statement to parse and plan).
_DUE = (select(_jobs.c.id)
        .where(_jobs.c.status == "queued", _jobs.c.next_attempt_at <= bindparam("at"),
               or_(_jobs.c.locked_until.is_(None), _jobs.c.locked_until < bindparam("at")))
        .order_by(_jobs.c.next_attempt_at).limit(bindparam("limit")))


def _claim(due: Select) -> Update:
    return (update(_jobs).where(_jobs.c.id.in_(due.scalar_subquery()))
            .values(locked_until=bindparam("until", type_=_jobs.c.locked_until.type), attempts=_jobs.c.attempts + 1)
            .returning(*_jobs.c))


_claimed = _claim(_DUE.with_for_update(skip_locked=True)).cte("claimed")  # PostgreSQL; SQLite's is in sqlite_hot
_CLAIM = (select(_claimed, *_messages.c, *_webhooks.c)
          .join_from(_claimed, _messages, _claimed.c.message_id == _messages.c.id)
          .join(_webhooks, _claimed.c.webhook_id == _webhooks.c.id))
_NEXT_DUE = (select(_jobs.c.next_attempt_at).where(_jobs.c.status == "queued", _jobs.c.locked_until.is_(None))
             .order_by(_jobs.c.next_attempt_at).limit(1))
# Jobs still under the given (id, locked_until) leases; "id IN" too, for the primary key index.
# No "status = 'queued'" term: a job leaves the queue only through _FINISH or _FINISH_HELD, which
# clear its lease, so a matching lease means a queued job. With that term SQLite's planner read
# every queued job through ix_delivery_jobs_due instead (2.1 ms per group with 6,000 queued).
_UNDER_LEASE = and_(_jobs.c.id.in_(bindparam("ids", expanding=True)),
                    tuple_(_jobs.c.id, _jobs.c.locked_until).in_(bindparam("leases", expanding=True)))
_HELD = select(_jobs.c.id).where(_UNDER_LEASE).order_by(_jobs.c.id).with_for_update()
# PostgreSQL: the (id, locked_until) leases as two arrays, and, unless raw messages are kept, the
# drop of each message no queued job needs any more in the same statement. Its parts see one
# snapshot, where the jobs being finished are still queued: hence "not one of them".
_lease = (func.unnest(bindparam("ids", type_=ARRAY(String)), bindparam("leases", type_=ARRAY(UTCDateTime())))
          .table_valued("id", "until").render_derived(name="lease"))
_finished = (update(_jobs).where(_jobs.c.id == _lease.c.id, _jobs.c.locked_until == _lease.c.until)
             .values(status=bindparam("new_status"), finished_at=bindparam("at", type_=_jobs.c.finished_at.type),
                     locked_until=None, last_error="")
             .returning(_jobs.c.id, _jobs.c.message_id).cte("finished"))
_FINISH_HELD = select(_finished.c.id)
_FINISH_HELD_AND_DROP = _FINISH_HELD.add_cte(delete(_messages).where(
    _messages.c.id.in_(select(_finished.c.message_id)),
    ~exists().where(_jobs.c.message_id == _messages.c.id, _jobs.c.status == "queued",
                    _jobs.c.id.not_in(select(_finished.c.id)))).cte("dropped"))
_FINISH = (update(_jobs).where(_jobs.c.id.in_(bindparam("ids", expanding=True)))
           .values(status=bindparam("new_status"), finished_at=bindparam("at", type_=_jobs.c.finished_at.type),
                   locked_until=None, last_error=bindparam("error")))
_DROP_FINISHED = delete(_messages).where(
    _messages.c.id.in_(bindparam("ids", expanding=True)),
    ~exists().where(_jobs.c.message_id == _messages.c.id, _jobs.c.status == "queued"))


def _leases(jobs: Sequence[Job]) -> dict[str, list]:
    return {"ids": [job.id for job in jobs], "leases": [(job.id, job.locked_until) for job in jobs]}


def claim(session: Session, *, limit: int, lease: timedelta) -> list[Claimed]:
    """Take up to ``limit`` due jobs: lease them and count the attempt; each with its message
    and its webhook. A job whose message or webhook was deleted in that instant is left out
    (its row goes with them: the foreign keys cascade)."""
    at = now()
    if (cur := sqlite_hot.cursor(session)) is not None:
        rows = sqlite_hot.claim(cur, at=at, until=at + lease, limit=limit)
    else:
        rows = session.execute(_CLAIM, {"at": at, "limit": limit, "until": at + lease})
    messages: dict[str, MessageRow] = {}  # a message going to several webhooks is kept once
    claimed = []
    for row in rows:
        job = JobRow._make(row[:_MESSAGE_AT])
        message = messages.get(job.message_id)
        if message is None:
            message = messages[job.message_id] = MessageRow._make(row[_MESSAGE_AT:_WEBHOOK_AT])
        claimed.append((job, message, WebhookRow._make(row[_WEBHOOK_AT:])))
    return claimed


def next_due_at(session: Session) -> datetime | None:
    """When the earliest queued job that no worker holds becomes due (for the worker's sleep)."""
    return session.scalar(_NEXT_DUE)


def still_held(session: Session, jobs: Sequence[Job]) -> set[str]:
    """The ids of ``jobs`` still under the lease they were claimed with, locked until the caller
    commits. A job missing here was taken over by another worker after its lease ran out: that
    worker records it, so this one must not (else one delivery is logged twice)."""
    if not jobs:
        return set()
    return set(session.execute(_HELD, _leases(jobs)).scalars())


def finish_many(session: Session, jobs: Sequence[Job], *, status: str, error: str = "", keep_raw: bool) -> None:
    """Mark jobs delivered or failed; drop each raw message once no job needs it."""
    session.execute(_FINISH, {"ids": [job.id for job in jobs], "new_status": status, "at": now(),
                              "error": error[:2000]})
    if not keep_raw:
        drop_finished_messages(session, {job.message_id for job in jobs})


def finish_held(session: Session, jobs: Sequence[Job], *, status: str, keep_raw: bool) -> set[str]:
    """``still_held`` and ``finish_many`` in one statement: mark the jobs still under the lease
    they were claimed with finished (the update locks them until the caller commits, as
    ``still_held`` does), drop each raw message once no job needs it, and return their ids."""
    if not jobs:
        return set()
    if (cur := sqlite_hot.cursor(session)) is None:
        statement = _FINISH_HELD if keep_raw else _FINISH_HELD_AND_DROP
        return set(session.execute(statement, {"ids": [job.id for job in jobs], "new_status": status, "at": now(),
                                               "leases": [job.locked_until for job in jobs]}).scalars())
    finished = sqlite_hot.finish_held(cur, _leases(jobs)["leases"], status=status, at=now())
    if finished and not keep_raw:
        sqlite_hot.drop_finished_messages(cur, {job.message_id for job in jobs if job.id in finished})
    return finished


def retry_later(session: Session, job: Job, *, delay: float, error: str,
                count_attempt: bool = True) -> None:
    """Put the job back for another attempt after ``delay`` seconds (rate limits don't count as attempts)."""
    values = {"next_attempt_at": now() + timedelta(seconds=delay), "locked_until": None, "last_error": error[:2000]}
    if not count_attempt:
        values["attempts"] = _jobs.c.attempts - 1
    session.execute(update(_jobs).where(_jobs.c.id == job.id).values(**values))


def drop_finished_messages(session: Session, message_ids: Iterable[str]) -> None:
    if (cur := sqlite_hot.cursor(session)) is not None:
        sqlite_hot.drop_finished_messages(cur, message_ids)
    else:
        session.execute(_DROP_FINISHED, {"ids": list(message_ids)})


def purge_finished_messages(session: Session, *, keep_days: int) -> None:
    """Periodic: raw messages whose jobs are all finished and that are past the keep period."""
    cutoff = now() - timedelta(days=keep_days)
    still_needed = exists().where(and_(DeliveryJob.message_id == Message.id, DeliveryJob.status == "queued"))
    session.execute(delete(Message).where(Message.received_at < cutoff, ~still_needed))
