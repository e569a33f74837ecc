"""The delivery pipeline's hot statements on SQLite, run on the sqlite3 connection itself.

SQLite lets one transaction write at a time, so the time each write transaction holds the lock
(from its first write to its commit) is what every SMTP commit and every worker claim and record
queue for; on 2 cores it was the ceiling (about 0.7 ms of lock per message at 4 KiB, the lock busy
all the time at 1,400 messages/s). Most of that was SQLAlchemy's own work per statement and per
row (cache keys, parameter and result processing), not SQLite's: for a group of 16 deliveries the
claim took 1.0-1.4 ms and the record 1.8-2.5 ms through SQLAlchemy Core, 0.6 and 1.1 ms here
(the session's begin and commit included).

So on SQLite these few statements are plain SQL on the DBAPI cursor, inside the caller's
transaction; on PostgreSQL (many writers at once, row locks) the callers run the Core statements
beside them, which say the same. Values are stored in the formats SQLAlchemy uses, derived from
each column's type, so every other query reads these rows as usual.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Insert, Table, insert
from sqlalchemy.orm import Session

from conduit.db.base import UTCDateTime
from conduit.db.models import DeliveryJob, Message, Webhook

_jobs, _messages, _webhooks = DeliveryJob.__table__, Message.__table__, Webhook.__table__


def cursor(session: Session) -> Any | None:  # noqa: ANN401 - a DBAPI cursor (sqlite3, or aiosqlite's adapter)
    """A cursor on the session's connection, in its transaction, when the database is SQLite."""
    if session.bind.dialect.name != "sqlite":
        return None
    return session.connection().connection.dbapi_connection.cursor()


# --- values as SQLAlchemy stores them on SQLite ------------------------------------------------


def _stored_datetime(value: datetime | None) -> str | None:
    """UTCDateTime on SQLite: naive UTC text with microseconds, as SQLAlchemy's DATETIME writes it."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _read_datetime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _to_db(column: Column) -> Callable[[Any], Any] | None:
    if isinstance(column.type, UTCDateTime):
        return _stored_datetime
    if isinstance(column.type, JSON):
        return json.dumps  # None too: SQLAlchemy's JSON stores it as 'null'
    if isinstance(column.type, Boolean):
        return lambda value: None if value is None else int(value)
    return None


def _from_db(column: Column) -> Callable[[Any], Any] | None:
    if isinstance(column.type, UTCDateTime):
        return _read_datetime
    if isinstance(column.type, JSON):
        return lambda value: None if value is None else json.loads(value)
    if isinstance(column.type, Boolean):
        return lambda value: None if value is None else bool(value)
    return None


def _reader(columns: Sequence[Column]) -> Callable[[Sequence[Any]], list[Any]]:
    """Converts a result row of these columns to Python values, as SQLAlchemy's types would."""
    converters = [(i, convert) for i, column in enumerate(columns) if (convert := _from_db(column)) is not None]

    def read(row: Sequence[Any]) -> list[Any]:
        values = list(row)
        for i, convert in converters:
            values[i] = convert(values[i])
        return values
    return read


def _marks(count: int) -> str:
    return ", ".join("?" * count)


# --- inserts ---------------------------------------------------------------------------------------


@cache
def _insert_of(table: Table, keys: tuple[str, ...]) -> tuple[str, list[Callable[[Any], Any] | None]]:
    sql = f"INSERT INTO {table.name} ({', '.join(keys)}) VALUES ({_marks(len(keys))})"
    return sql, [_to_db(table.c[key]) for key in keys]


@cache
def _core_insert(table: Table) -> Insert:
    return insert(table)


def insert_many(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows that all name the same columns, in the session's transaction: on SQLite with
    the cursor's executemany, elsewhere as one Core insert. Rows give every column a value (no
    Python-side defaults are applied on SQLite)."""
    if not rows:
        return
    if (cur := cursor(session)) is None:
        session.connection().execute(_core_insert(table), rows)
        return
    keys = tuple(rows[0])
    sql, converters = _insert_of(table, keys)
    pairs = list(zip(keys, converters, strict=True))
    cur.executemany(sql, [tuple(row[key] if convert is None else convert(row[key]) for key, convert in pairs)
                          for row in rows])


# --- the queue -----------------------------------------------------------------------------------

_CLAIM = ("UPDATE delivery_jobs SET attempts = attempts + 1, locked_until = ? WHERE id IN ("
          "SELECT id FROM delivery_jobs WHERE status = 'queued' AND next_attempt_at <= ?"
          " AND (locked_until IS NULL OR locked_until < ?) ORDER BY next_attempt_at LIMIT ?) RETURNING id")
_CLAIMED_COLUMNS = [*_jobs.c, *_messages.c, *_webhooks.c]
_read_claimed = _reader(_CLAIMED_COLUMNS)
_CLAIMED = (f"SELECT {', '.join(f'{c.table.name}.{c.name}' for c in _CLAIMED_COLUMNS)}"
            " FROM delivery_jobs JOIN messages ON delivery_jobs.message_id = messages.id"
            " JOIN webhooks ON delivery_jobs.webhook_id = webhooks.id WHERE delivery_jobs.id IN ({})")


def claim(cur: Any, *, at: datetime, until: datetime, limit: int) -> list[list[Any]]:  # noqa: ANN401
    """queue.claim on SQLite: lease up to ``limit`` due jobs and count the attempt; per job, its
    columns, then its message's and its webhook's (two statements: SQLite's UPDATE ... RETURNING
    cannot feed a join)."""
    stored_at = _stored_datetime(at)
    cur.execute(_CLAIM, (_stored_datetime(until), stored_at, stored_at, limit))
    ids = [row[0] for row in cur.fetchall()]
    if not ids:
        return []
    cur.execute(_CLAIMED.format(_marks(len(ids))), ids)
    return [_read_claimed(row) for row in cur.fetchall()]


_FINISH_HELD = ("UPDATE delivery_jobs SET status = ?, finished_at = ?, locked_until = NULL, last_error = ''"
                " WHERE id IN ({}) AND (id, locked_until) IN (VALUES {}) RETURNING id")


def finish_held(cur: Any, leases: Sequence[tuple[str, datetime]], *, status: str, at: datetime) -> set[str]:  # noqa: ANN401
    """queue.finish_held's update on SQLite: the jobs still under these (id, locked_until) leases
    are marked finished; returns their ids."""
    sql = _FINISH_HELD.format(_marks(len(leases)), ", ".join(["(?, ?)"] * len(leases)))
    params: list[Any] = [status, _stored_datetime(at), *(job_id for job_id, _ in leases)]
    for job_id, locked_until in leases:
        params += (job_id, _stored_datetime(locked_until))
    cur.execute(sql, params)
    return {row[0] for row in cur.fetchall()}


_DROP_FINISHED = ("DELETE FROM messages WHERE id IN ({}) AND NOT EXISTS (SELECT 1 FROM delivery_jobs"
                  " WHERE delivery_jobs.message_id = messages.id AND delivery_jobs.status = 'queued')")


def drop_finished_messages(cur: Any, message_ids: Iterable[str]) -> None:  # noqa: ANN401
    ids = tuple(message_ids)
    if ids:
        cur.execute(_DROP_FINISHED.format(_marks(len(ids))), ids)
