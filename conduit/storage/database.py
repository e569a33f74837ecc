"""The database a process uses, as one object made once at start-up (``open_database``) and
passed explicitly: its engines, the SQLite side connections and writers' lock, the thread pool,
the delivery queue, the reservations' engine and the LISTEN/NOTIFY connections. Nothing of it
lives in module state, so two Databases in one process (tests, tools) never share anything.

Sessions made by ``Database.sessions`` (and the hot paths' synchronous ones) carry their Database
in ``Session.info``: code deep in a transaction reaches the throttle reservations and the route
announcements of the database it is in through ``database_of(session)``.
"""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session
from sqlalchemy.pool import ConnectionPoolEntry

from conduit.config import Settings
from conduit.storage import engine as engines
from conduit.storage import notify
from conduit.storage.interfaces import JobQueue
from conduit.storage.message_store import MessageStore, SqliteMessageStore
from conduit.storage.queue_postgres import PostgresQueue
from conduit.storage.queue_sqlite import SqliteQueue

T = TypeVar("T")
_DATABASE = "conduit.database"  # Session.info key
RESERVATION_POOL_SIZE = 2
SQLITE_THREADS = 4


class Database:
    """What every role of a process shares of the database. Made by ``open_database``."""

    dialect: str
    listens = False  # whether ``listen`` hears other processes' announcements

    def __init__(self, database_url: str, engine: AsyncEngine, queue: JobQueue, reservations: AsyncEngine,
                 messages: MessageStore) -> None:
        self.url = database_url
        self.engine = engine
        self.queue = queue
        self.messages = messages  # the Messages API's reads and erasures
        self.sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=True, info={_DATABASE: self})
        # Throttle counts are reserved in short transactions of their own, on a small pool of
        # their own (conduit/storage/throttle_store.py).
        self.reservations = reservations

    def transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        """One unit of work: commit on success, roll back on any exception."""
        return engines.transaction(self.sessions)

    async def run(self, fn: Callable[..., T], *args: Any, durable: bool = True, **kwargs: Any) -> T:
        """``fn(session, *args, **kwargs)`` with a synchronous Session, in one transaction:
        committed when it returns, rolled back when it raises.

        ``durable=False``: the commit does not wait for the disk. A crash of the process loses
        nothing; a crash of the machine or the database server may undo the last such commits,
        never corrupt anything, and the next durable commit makes them durable too. For the
        worker's claims and records: undoing one means a job delivered again (at-least-once),
        never a message lost."""
        raise NotImplementedError

    def sync_engines(self) -> tuple[Engine, ...]:
        """Every synchronous engine that commits for this database (for whoever listens to
        commits: conduit/services/route_cache.py)."""
        return (self.engine.sync_engine,)

    def announce(self, session: Session, channel: str) -> None:
        """In a transaction that changes what ``channel`` is about: tell the other processes
        listening once it commits (PostgreSQL NOTIFY; nothing on SQLite, whose processes are
        told through `conduit serve`'s pipes)."""

    async def listen(self, channel: str, wake: Callable[[], None], stop: asyncio.Event) -> None:
        """Call ``wake`` on every announcement on ``channel`` until ``stop`` (when ``listens``)."""
        await stop.wait()

    async def dispose(self) -> None:
        await self.reservations.dispose()
        await self.engine.dispose()


class SqliteDatabase(Database):
    """SQLite: the async engine for the API's and the services' sessions, and for ``run`` two
    plain sqlite3 engines on the same file (one committing with fsync, synchronous=FULL, one
    without, NORMAL), the writers' lock file and a thread pool.

    ``run`` does the whole transaction, from its first statement to the commit's fsync, in one
    trip to a thread, on a plain sqlite3 connection. Through aiosqlite each statement is a trip
    (3-4 with the commit), and between trips the event loop runs whatever else is ready, while
    SQLite's single write lock stays held: the SMTP server's group commits and the workers'
    claims and records waited for each other's event loops, in SQLite's busy handler, which
    sleeps at least a millisecond each time."""

    dialect = "sqlite"

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        if not url.database or url.database == ":memory:":
            raise ValueError("SQLite needs a database file (sqlite+aiosqlite:///path/to/conduit.db)")
        reservations = engines.sqlite_engine(database_url)
        event.listen(reservations.sync_engine, "connect", _sqlite_own_transactions)
        event.listen(reservations.sync_engine, "begin", _sqlite_begin_immediate)
        super().__init__(database_url, engines.sqlite_engine(database_url), SqliteQueue(), reservations,
                         SqliteMessageStore())
        self._durable = engines.sqlite_sync_engine(url, synchronous="FULL")
        self._lazy = engines.sqlite_sync_engine(url, synchronous="NORMAL")
        self._lock_path = f"{url.database}-writer.lock"
        # Not the loop's default executor, which also parses large messages and renders
        # templates: a commit never queues behind those.
        self._threads = ThreadPoolExecutor(max_workers=SQLITE_THREADS, thread_name_prefix="sqlite")

    async def run(self, fn: Callable[..., T], *args: Any, durable: bool = True, **kwargs: Any) -> T:
        engine = self._durable if durable else self._lazy
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._in_thread, engine, fn,
                                                                args, kwargs)

    def _in_thread(self, engine: Engine, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        """One transaction, holding the writers' lock: these transactions, from every process and
        thread, take turns on a file lock, which wakes the next one the moment it is free, instead
        of colliding in SQLite's busy handler, which sleeps 1, 2, 5, 10... ms between tries."""
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with Session(engine, expire_on_commit=False, info={_DATABASE: self}) as session, session.begin():
                return fn(session, *args, **kwargs)

    def sync_engines(self) -> tuple[Engine, ...]:
        return (self.engine.sync_engine, self._durable, self._lazy)

    async def dispose(self) -> None:
        await super().dispose()
        self._threads.shutdown(wait=True)
        self._durable.dispose()
        self._lazy.dispose()


class PostgresDatabase(Database):
    """PostgreSQL: one async engine; ``run`` is ``AsyncSession.run_sync`` in a transaction.

    ``lazy_commits``, for processes that take no mail (``conduit worker``): their connections
    commit without waiting for the disk (synchronous_commit=off) unless ``run`` is asked for a
    durable commit; set per connection, it costs no ``SET LOCAL`` round trip per transaction.

    ``idle_transaction_timeout`` (seconds), for workers: a worker stopped or frozen inside a
    transaction (a claim holds the claims' turn, an advisory lock) has its session ended by
    PostgreSQL after this long, so the other workers go on claiming instead of waiting for it."""

    dialect = "postgresql"
    listens = True
    _LAZY_COMMIT = text("SET LOCAL synchronous_commit TO OFF")
    _DURABLE_COMMIT = text("SET LOCAL synchronous_commit TO ON")

    def __init__(self, database_url: str, *, pool_size: int, lazy_commits: bool,
                 idle_transaction_timeout: float | None = None) -> None:
        super().__init__(database_url,
                         engines.postgres_engine(database_url, pool_size=pool_size, lazy_commits=lazy_commits,
                                                 idle_transaction_timeout=idle_transaction_timeout),
                         PostgresQueue(),
                         engines.postgres_engine(database_url, pool_size=RESERVATION_POOL_SIZE, lazy_commits=False,
                                                 idle_transaction_timeout=idle_transaction_timeout),
                         MessageStore())
        self._lazy_commits = lazy_commits
        self._notifications = {channel: text(f"NOTIFY {channel}") for channel in (notify.JOBS_CHANNEL,)}

    async def run(self, fn: Callable[..., T], *args: Any, durable: bool = True, **kwargs: Any) -> T:
        async with self.transaction() as db:
            if durable == self._lazy_commits:  # set for this transaction only when not the connection's default
                await db.execute(self._DURABLE_COMMIT if durable else self._LAZY_COMMIT)
            return await db.run_sync(fn, *args, **kwargs)

    def announce(self, session: Session, channel: str) -> None:
        statement = self._notifications.get(channel)
        if statement is None:
            statement = self._notifications[channel] = text(f"NOTIFY {channel}")
        session.execute(statement)

    async def listen(self, channel: str, wake: Callable[[], None], stop: asyncio.Event) -> None:
        await notify.listen(self.url, wake, stop, channel=channel)


def open_database(settings: Settings, *, lazy_commits: bool = False, pool_size: int = 10,
                  idle_transaction_timeout: float | None = None) -> Database:
    """The process's Database for CONDUIT_DATABASE_URL. ``lazy_commits`` and
    ``idle_transaction_timeout``: see PostgresDatabase."""
    if settings.database_url.startswith("sqlite"):
        return SqliteDatabase(settings.database_url)
    return PostgresDatabase(settings.database_url, pool_size=pool_size, lazy_commits=lazy_commits,
                            idle_transaction_timeout=idle_transaction_timeout)


def database_of(session: Session | AsyncSession) -> Database | None:
    """The Database whose sessions made ``session`` (None for a session made elsewhere)."""
    found = session.info.get(_DATABASE)
    return found if isinstance(found, Database) else None


def _sqlite_own_transactions(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    """sqlite3 would begin only at the first write, after the counts were read: SQLAlchemy begins."""
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")
