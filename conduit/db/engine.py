"""Engines per dialect, sessions, and the transaction boundaries: ``transaction`` for async code,
``run_transaction`` for the hot paths' synchronous statement functions."""

from __future__ import annotations

import asyncio
import fcntl
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Engine, event, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.util import await_only

T = TypeVar("T")
_LAZY_COMMIT = text("SET LOCAL synchronous_commit TO OFF")
_DURABLE_COMMIT = text("SET LOCAL synchronous_commit TO ON")


@dataclass(frozen=True)
class _Twins:
    """SQLite: plain sqlite3 engines on the async engine's file for ``run_transaction``: one
    committing with fsync (synchronous=FULL), one without (NORMAL), and the writers' lock file."""

    durable: Engine
    lazy: Engine
    lock_path: str


_twins: weakref.WeakKeyDictionary[Engine, _Twins] = weakref.WeakKeyDictionary()
_sqlite_threads: ThreadPoolExecutor | None = None
_lazy_by_default: weakref.WeakSet[Engine] = weakref.WeakSet()


def create_engine(database_url: str, *, pool_size: int = 10, lazy_commits: bool = False) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout, foreign keys and full fsync.

    ``lazy_commits`` (PostgreSQL), for processes that take no mail (``conduit worker``): their
    connections commit without waiting for the disk (synchronous_commit=off) unless
    ``run_transaction`` is asked for a durable commit. Their transactions are nearly all the
    worker's, which need no durability (see ``run_transaction``); set per connection, it costs
    no ``SET LOCAL`` round trip per transaction.
    """
    if database_url.startswith("sqlite"):
        engine = create_async_engine(database_url, connect_args={"timeout": 30}, pool_reset_on_return=None)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine.pool, "reset", _sqlite_reset)
        url = make_url(database_url)
        if url.database and url.database != ":memory:":
            twins = _Twins(durable=_sqlite_sync_engine(url, synchronous="FULL"),
                           lazy=_sqlite_sync_engine(url, synchronous="NORMAL"),
                           lock_path=f"{url.database}-writer.lock")
            _twins[engine.sync_engine] = twins
            event.listen(engine.sync_engine, "engine_disposed", lambda _: (twins.durable.dispose(), twins.lazy.dispose()))
        return engine
    connect_args = {"server_settings": {"synchronous_commit": "off"}} if lazy_commits else {}
    engine = create_async_engine(database_url, pool_size=pool_size, max_overflow=pool_size, connect_args=connect_args)
    event.listen(engine.sync_engine.pool, "checkout", _ping)
    if lazy_commits:
        _lazy_by_default.add(engine.sync_engine)
    return engine


def _ping(dbapi_connection, record, proxy) -> None:  # noqa: ANN001, ARG001 - pool event arguments
    """pool_pre_ping in one round trip, not asyncpg's three (BEGIN, the query, ROLLBACK), on every
    checkout: a connection the database dropped (a restart, an outage) is replaced before it is
    used, and every other pooled connection with it, as pool_pre_ping does."""
    try:
        await_only(record.driver_connection.execute("SELECT 1"))  # simple query protocol: no prepared statement
    except Exception as exc:  # noqa: BLE001 - any failure means the connection is not usable
        raise InvalidatePoolError(f"connection failed its ping: {exc!r}") from exc


def _sqlite_sync_engine(url: URL, *, synchronous: str) -> Engine:
    engine = create_sync_engine(url.set(drivername="sqlite"), connect_args={"timeout": 30, "check_same_thread": False})
    event.listen(engine, "connect", partial(_sqlite_pragmas, synchronous=synchronous))
    return engine


def _sqlite_pragmas(dbapi_connection, _record, synchronous: str = "FULL") -> None:  # noqa: ANN001 - DBAPI connection
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_reset(dbapi_connection, record, state) -> None:  # noqa: ANN001 - pool event arguments
    """A connection back in the pool is rolled back only if SQLite still has a transaction open.
    The pool's default calls rollback() every time, also after a commit, where sqlite3 does
    nothing: one more trip to aiosqlite's thread per transaction, for nothing."""
    if state.asyncio_safe and not state.transaction_was_reset and record.driver_connection.in_transaction:
        dbapi_connection.rollback()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)


async def run_transaction(sessions: async_sessionmaker[AsyncSession], fn: Callable[..., T], *args: Any,
                          durable: bool = True, **kwargs: Any) -> T:
    """``fn(session, *args, **kwargs)`` with a synchronous Session, in one transaction: committed
    when it returns, rolled back when it raises.

    ``durable=False``: the commit does not wait for the disk (SQLite synchronous=NORMAL,
    PostgreSQL synchronous_commit=off). A crash of the process loses nothing; a crash of the
    machine or the database server may undo the last such commits, never corrupt anything, and
    the next durable commit makes them durable too. For the worker's claims and records: undoing
    one means a job delivered again (at-least-once), never a message lost.

    On SQLite the whole transaction, from its first statement to the commit's fsync, runs in one
    trip to a thread, on a plain sqlite3 connection. Through aiosqlite each statement is a trip
    (3-4 with the commit), and between trips the event loop runs whatever else is ready, while
    SQLite's single write lock stays held: the SMTP server's group commits and the workers'
    claims and records waited for each other's event loops, in SQLite's busy handler, which
    sleeps at least a millisecond each time. On PostgreSQL it is ``AsyncSession.run_sync``.
    """
    engine = sessions.kw["bind"]
    twins = _twins.get(engine.sync_engine)
    if twins is None:
        async with transaction(sessions) as db:
            # Set for this transaction only when the connection's default is not what it asks for.
            if engine.dialect.name == "postgresql" and durable == (engine.sync_engine in _lazy_by_default):
                await db.execute(_DURABLE_COMMIT if durable else _LAZY_COMMIT)
            return await db.run_sync(fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(
        _threads(), _in_thread, twins.durable if durable else twins.lazy, twins.lock_path, fn, args, kwargs)


def _in_thread(engine: Engine, lock_path: str, fn: Callable[..., T], args: tuple, kwargs: dict[str, Any]) -> T:
    """One transaction, holding the writers' lock: these transactions, from every process and
    thread, take turns on a file lock, which wakes the next one the moment it is free, instead of
    colliding in SQLite's busy handler, which sleeps 1, 2, 5, 10... ms between tries."""
    with open(lock_path, "a") as lock:  # noqa: PTH123 - a new open file description per call: threads exclude each other too
        fcntl.flock(lock, fcntl.LOCK_EX)
        with Session(engine, expire_on_commit=False) as session, session.begin():
            return fn(session, *args, **kwargs)


def _threads() -> ThreadPoolExecutor:
    """SQLite's transactions run here, not in the loop's default executor, which also parses large
    messages and renders templates: a commit never queues behind those."""
    global _sqlite_threads  # noqa: PLW0603 - one pool per process, made on first use
    if _sqlite_threads is None:
        _sqlite_threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sqlite")
    return _sqlite_threads


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on any exception."""
    async with sessions() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
