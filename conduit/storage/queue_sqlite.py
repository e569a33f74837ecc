"""The delivery queue on SQLite: the statements of sql/sqlite.sql, run on the sqlite3 cursor in
the caller's transaction.

SQLite lets one transaction write at a time, so the time each write transaction holds the lock
(from its first write to its commit) is what every SMTP commit and every worker claim and record
queue for. Most of that time was SQLAlchemy's own work per statement and per row (cache keys,
parameter and result processing), not SQLite's; so these statements skip it. Values are stored
in the formats SQLAlchemy uses, derived from each column's type, so every other query reads these
rows as usual. New jobs need no announcement: a worker in the same process is woken by the SMTP
server, `conduit serve`'s workers by their wake pipes, any other at its next poll.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Table
from sqlalchemy.orm import Session

from conduit.clock import now
from conduit.storage import queries
from conduit.storage.base import UTCDateTime
from conduit.storage.interfaces import PURGE_GRACE, Claimed, Leased, new_job
from conduit.storage.queries import JOBS, LOGS, MESSAGES, WEBHOOKS


def stored_datetime(value: datetime | None) -> str | None:
    """UTCDateTime on SQLite: naive UTC text with microseconds, as SQLAlchemy's DATETIME writes it."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _read_datetime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _to_db(column: Column[Any]) -> Callable[[Any], Any] | None:
    if isinstance(column.type, UTCDateTime):
        return stored_datetime
    if isinstance(column.type, JSON):
        return json.dumps  # None too: SQLAlchemy's JSON stores it as 'null'
    if isinstance(column.type, Boolean):
        return lambda value: None if value is None else int(value)
    return None


def _from_db(column: Column[Any]) -> Callable[[Any], Any] | None:
    if isinstance(column.type, UTCDateTime):
        return _read_datetime
    if isinstance(column.type, JSON):
        return lambda value: None if value is None else json.loads(value)
    if isinstance(column.type, Boolean):
        return lambda value: None if value is None else bool(value)
    return None


def _reader(columns: Sequence[Column[Any]]) -> Callable[[Sequence[Any]], list[Any]]:
    """Converts a result row of these columns to Python values, as SQLAlchemy's types would."""
    converters = [(i, convert) for i, column in enumerate(columns) if (convert := _from_db(column)) is not None]

    def read(row: Sequence[Any]) -> list[Any]:
        values = list(row)
        for i, convert in converters:
            values[i] = convert(values[i])
        return values
    return read


def _leases(jobs: Sequence[Leased]) -> str:
    return json.dumps([(job.id, stored_datetime(job.locked_until)) for job in jobs])


def _cursor(session: Session) -> Any:
    """A cursor on the session's connection, in its transaction."""
    connection = session.connection().connection.dbapi_connection
    assert connection is not None, "a connection in a transaction is open"
    return connection.cursor()


class SqliteQueue:
    """conduit.storage.interfaces.JobQueue on SQLite."""

    def __init__(self) -> None:
        self._sql = queries.load("sqlite")
        self._read_claimed = _reader([*JOBS.c, *MESSAGES.c, *WEBHOOKS.c])
        self._inserts: dict[tuple[str, tuple[str, ...]], tuple[str, list[Callable[[Any], Any] | None]]] = {}

    # --- inserts ---------------------------------------------------------------------------------

    def _insert(self, session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        """The cursor's executemany; rows all name the same columns and give each a value."""
        if not rows:
            return
        keys = tuple(rows[0])
        statement = self._inserts.get((table.name, keys))
        if statement is None:
            # S608: the names are the table's and its columns' (table.c below rejects any other), never input
            sql = f"INSERT INTO {table.name} ({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))})"  # noqa: S608 - see above
            statement = self._inserts[(table.name, keys)] = (sql, [_to_db(table.c[key]) for key in keys])
        sql, converters = statement
        pairs = list(zip(keys, converters, strict=True))
        _cursor(session).executemany(sql, [tuple(row[key] if convert is None else convert(row[key])
                                                 for key, convert in pairs) for row in rows])

    def accept(self, session: Session, *, messages: Sequence[dict[str, Any]], jobs: Sequence[dict[str, Any]],
               logs: Sequence[dict[str, Any]] = ()) -> None:
        self._insert(session, MESSAGES, messages)  # first: the jobs' foreign keys
        self._insert(session, JOBS, jobs)
        self._insert(session, LOGS, logs)

    def enqueue(self, session: Session, *, message_id: str, webhook_id: str, recipients: Sequence[str]) -> str:
        job = new_job(message_id, webhook_id, recipients, now())
        self._insert(session, JOBS, [job])
        job_id: str = job["id"]
        return job_id

    def log(self, session: Session, rows: Sequence[dict[str, Any]]) -> None:
        self._insert(session, LOGS, rows)

    # --- the worker's statements -------------------------------------------------------------------

    def claim(self, session: Session, *, limit: int, lease: timedelta, per_webhook: int) -> list[Claimed]:
        at = now()
        cur = _cursor(session)
        cur.execute(self._sql["claim"], {"at": stored_datetime(at), "until": stored_datetime(at + lease),
                                         "limit": limit, "scan": 4 * limit, "per_webhook": per_webhook})
        ids = [row[0] for row in cur.fetchall()]
        if not ids:
            return []
        cur.execute(self._sql["claimed"], {"ids": json.dumps(ids)})
        return queries.split_claimed([self._read_claimed(row) for row in cur.fetchall()])

    def next_due_at(self, session: Session) -> datetime | None:
        cur = _cursor(session)
        cur.execute(self._sql["next_due"])
        row = cur.fetchone()
        return None if row is None else _read_datetime(row[0])

    def renew(self, session: Session, jobs: Sequence[Leased], *, lease: timedelta) -> dict[str, datetime]:
        if not jobs:
            return {}
        until = now() + lease
        cur = _cursor(session)
        cur.execute(self._sql["renew"], {"until": stored_datetime(until), "leases": _leases(jobs)})
        return {row[0]: until for row in cur.fetchall()}

    def still_held(self, session: Session, jobs: Sequence[Leased]) -> set[str]:
        if not jobs:
            return set()
        cur = _cursor(session)
        cur.execute(self._sql["still_held"], {"leases": _leases(jobs)})
        return {row[0] for row in cur.fetchall()}

    def finish_held(self, session: Session, jobs: Sequence[Leased], *, status: str, keep_raw: bool) -> set[str]:
        if not jobs:
            return set()
        cur = _cursor(session)
        cur.execute(self._sql["finish_held"], {"status": status, "at": stored_datetime(now()),
                                               "leases": _leases(jobs)})
        finished = cur.fetchall()
        if finished and not keep_raw:
            cur.execute(self._sql["drop_finished_messages"], {"ids": json.dumps(sorted({m for _, m in finished}))})
        return {job_id for job_id, _ in finished}

    def fail(self, session: Session, job: Leased, *, error: str, keep_raw: bool) -> None:
        cur = _cursor(session)
        cur.execute(self._sql["fail"], {"id": job.id, "at": stored_datetime(now()), "error": error[:2000]})
        if cur.fetchall() and not keep_raw:
            cur.execute(self._sql["drop_finished_messages"], {"ids": json.dumps([job.message_id])})

    def reschedule(self, session: Session, job: Leased, *, delay: float, error: str,
                   count_attempt: bool = True) -> None:
        _cursor(session).execute(self._sql["reschedule"], {
            "id": job.id, "next": stored_datetime(now() + timedelta(seconds=delay)), "error": error[:2000],
            "uncount": 0 if count_attempt else 1})

    def drop_unneeded(self, session: Session, message_ids: Sequence[str]) -> None:
        if message_ids:
            _cursor(session).execute(self._sql["drop_finished_messages"], {"ids": json.dumps(list(message_ids))})

    def recipients_of(self, session: Session, *, message_id: str, webhook_id: str) -> list[str] | None:
        cur = _cursor(session)
        cur.execute(self._sql["recipients_of"], {"message_id": message_id, "webhook_id": webhook_id})
        row = cur.fetchone()
        return None if row is None else json.loads(row[0])

    def purge(self, session: Session, *, keep_days: int, limit: int) -> int:
        cur = _cursor(session)
        cur.execute(self._sql["purge_messages"],
                    {"before": stored_datetime(now() - max(timedelta(days=keep_days), PURGE_GRACE)), "limit": limit})
        return int(cur.rowcount)
