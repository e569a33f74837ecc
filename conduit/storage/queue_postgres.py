"""The delivery queue on PostgreSQL: the statements of sql/postgres.sql, as text statements with
typed parameters and results, in the caller's transaction.

Many workers on many machines share the queue: claims lock the rows they take (``FOR UPDATE
SKIP LOCKED``) and take turns, so that each sees the leases of the one before. The worker's
transactions run one after another, so each round trip counts: the claim with its join is one
statement, the finish with its message drop another, each with one text (arrays, not IN lists
of varying length), so asyncpg's prepared statements are reused. New jobs are announced with
``NOTIFY conduit_jobs``, delivered when the transaction commits (conduit/storage/notify.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, TextClause, bindparam, insert, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import TextualSelect
from sqlalchemy.types import TypeEngine

from conduit.clock import now
from conduit.storage import queries
from conduit.storage.base import UTCDateTime
from conduit.storage.interfaces import PURGE_GRACE, Claimed, Leased, new_job
from conduit.storage.notify import JOBS_CHANNEL
from conduit.storage.queries import JOBS, LOGS, MESSAGES, WEBHOOKS

_INDEX_PLANS = "conduit.index_plans"  # session.info: the transaction whose plans use the indexes
_CLAIM_TURN = int.from_bytes(b"clam", "big", signed=True)  # first key of pg_advisory_xact_lock(int, int)
_ARRAYS: dict[str, TypeEngine[Any]] = {"ids": ARRAY(String), "untils": ARRAY(UTCDateTime())}
_TIMES = ("at", "until", "next", "before")
_PARAM = re.compile(r"(?<![:\w]):(\w+)")  # text()'s bound parameters


def _statement(sql: str) -> TextClause:
    """A text statement whose datetime and array parameters are typed (asyncpg needs aware
    datetimes for timestamptz, and lists for arrays)."""
    params = set(_PARAM.findall(sql))
    statement = text(sql)
    typed = [bindparam(name, type_=_ARRAYS[name]) for name in _ARRAYS if name in params]
    typed += [bindparam(name, type_=UTCDateTime()) for name in _TIMES if name in params]
    return statement.bindparams(*typed)


def _leases(jobs: Sequence[Leased]) -> dict[str, list[Any]]:
    return {"ids": [job.id for job in jobs], "untils": [job.locked_until for job in jobs]}


class PostgresQueue:
    """conduit.storage.interfaces.JobQueue on PostgreSQL."""

    def __init__(self) -> None:
        sql = queries.load("postgres")
        self._sql: dict[str, TextClause | TextualSelect] = {
            name: _statement(statement) for name, statement in sql.items()
        }
        # Results typed by the columns they read (JSON, UTCDateTime).
        self._sql["claim"] = _statement(sql["claim"]).columns(*JOBS.c, *MESSAGES.c, *WEBHOOKS.c)
        self._sql["next_due"] = _statement(sql["next_due"]).columns(JOBS.c.next_attempt_at)
        self._sql["recipients_of"] = _statement(sql["recipients_of"]).columns(JOBS.c.recipients)
        self._announce = text(f"NOTIFY {JOBS_CHANNEL}")

    def accept(self, session: Session, *, messages: Sequence[dict[str, Any]], jobs: Sequence[dict[str, Any]],
               logs: Sequence[dict[str, Any]] = ()) -> None:
        connection = session.connection()
        for table, rows in ((MESSAGES, messages), (JOBS, jobs), (LOGS, logs)):  # messages first: foreign keys
            if rows:
                connection.execute(insert(table), list(rows))
        if jobs:
            connection.execute(self._announce)

    def enqueue(self, session: Session, *, message_id: str, webhook_id: str, recipients: Sequence[str]) -> str:
        job = new_job(message_id, webhook_id, recipients, now())
        self.accept(session, messages=(), jobs=[job])
        job_id: str = job["id"]
        return job_id

    def log(self, session: Session, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            session.connection().execute(insert(LOGS), list(rows))

    def _index_plans(self, session: Session) -> None:
        """The ``index_plans`` settings, once per transaction, before its first hot statement."""
        if self._plans_wanted(session):
            session.execute(self._sql["index_plans"])

    @staticmethod
    def _plans_wanted(session: Session) -> bool:
        """Whether this transaction has yet to run ``index_plans``: the caller runs it now."""
        session.connection()  # begins the transaction, if this is its first statement
        transaction = session.get_transaction()
        if session.info.get(_INDEX_PLANS) is transaction:
            return False
        session.info[_INDEX_PLANS] = transaction
        return True

    def claim(self, session: Session, *, limit: int, lease: timedelta, per_webhook: int) -> list[Claimed]:
        turn = "index_plans_and_claim_turn" if self._plans_wanted(session) else "claim_turn"
        session.execute(self._sql[turn], {"namespace": _CLAIM_TURN})
        at = now()
        rows = session.execute(self._sql["claim"], {"at": at, "until": at + lease, "limit": limit,
                                                    "scan": 4 * limit, "per_webhook": per_webhook})
        return queries.split_claimed(rows.all())

    def next_due_at(self, session: Session) -> datetime | None:
        due: datetime | None = session.scalar(self._sql["next_due"])
        return due

    def renew(self, session: Session, jobs: Sequence[Leased], *, lease: timedelta) -> dict[str, datetime]:
        if not jobs:
            return {}
        until = now() + lease
        self._index_plans(session)
        renewed = session.execute(self._sql["renew"], {"until": until, **_leases(jobs)}).scalars()
        return dict.fromkeys(renewed, until)

    def still_held(self, session: Session, jobs: Sequence[Leased]) -> set[str]:
        if not jobs:
            return set()
        self._index_plans(session)
        return set(session.execute(self._sql["still_held"], _leases(jobs)).scalars())

    def finish_held(self, session: Session, jobs: Sequence[Leased], *, status: str, keep_raw: bool) -> set[str]:
        if not jobs:
            return set()
        statement = self._sql["finish_held" if keep_raw else "finish_held_and_drop"]
        self._index_plans(session)
        return set(session.execute(statement, {"status": status, "at": now(), **_leases(jobs)}).scalars())

    def fail(self, session: Session, job: Leased, *, error: str, keep_raw: bool) -> None:
        failed = session.execute(self._sql["fail"], {"id": job.id, "at": now(), "error": error[:2000]}).all()
        if failed and not keep_raw:
            session.execute(self._sql["drop_finished_messages"], {"ids": [job.message_id]})

    def reschedule(self, session: Session, job: Leased, *, delay: float, error: str,
                   count_attempt: bool = True) -> None:
        session.execute(self._sql["reschedule"], {"id": job.id, "next": now() + timedelta(seconds=delay),
                                                  "error": error[:2000], "uncount": 0 if count_attempt else 1})

    def drop_unneeded(self, session: Session, message_ids: Sequence[str]) -> None:
        if message_ids:
            session.execute(self._sql["drop_finished_messages"], {"ids": list(message_ids)})

    def recipients_of(self, session: Session, *, message_id: str, webhook_id: str) -> list[str] | None:
        recipients: list[str] | None = session.scalar(self._sql["recipients_of"],
                                                      {"message_id": message_id, "webhook_id": webhook_id})
        return recipients

    def purge(self, session: Session, *, keep_days: int, limit: int) -> int:
        before = now() - max(timedelta(days=keep_days), PURGE_GRACE)
        result = session.execute(self._sql["purge_messages"], {"before": before, "limit": limit})
        return int(getattr(result, "rowcount", 0) or 0)
