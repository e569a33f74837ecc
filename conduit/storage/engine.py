"""Engines per dialect and the async transaction boundary. Stateless: the engines a process uses
are made and owned by its ``Database`` (conduit/storage/database.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, PoolResetState
from sqlalchemy.util import await_only


def sqlite_engine(database_url: str) -> AsyncEngine:
    """An async engine on a SQLite file: WAL, a busy timeout, foreign keys and full fsync."""
    engine = create_async_engine(database_url, connect_args={"timeout": 30}, pool_reset_on_return=None)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    event.listen(engine.sync_engine.pool, "reset", _sqlite_reset)
    return engine


def sqlite_sync_engine(url: URL, *, synchronous: str) -> Engine:
    """A plain sqlite3 engine on the same file, committing with ``PRAGMA synchronous``."""
    engine = create_sync_engine(url.set(drivername="sqlite"), connect_args={"timeout": 30, "check_same_thread": False})
    event.listen(engine, "connect", partial(_sqlite_pragmas, synchronous=synchronous))
    return engine


def postgres_engine(database_url: str, *, pool_size: int, lazy_commits: bool,
                    idle_transaction_timeout: float | None = None) -> AsyncEngine:
    """An async engine on PostgreSQL. ``lazy_commits``: its connections commit without waiting for
    the disk (synchronous_commit=off) unless a transaction asks for a durable commit.
    ``idle_transaction_timeout`` (seconds): PostgreSQL ends a session of this engine that sits in
    a transaction without a statement for longer (idle_in_transaction_session_timeout), and with
    it the locks the transaction held."""
    server_settings = {}
    if lazy_commits:
        server_settings["synchronous_commit"] = "off"
    if idle_transaction_timeout is not None:
        server_settings["idle_in_transaction_session_timeout"] = str(max(1, round(idle_transaction_timeout * 1000)))
    connect_args = {"server_settings": server_settings} if server_settings else {}
    engine = create_async_engine(database_url, pool_size=pool_size, max_overflow=pool_size, connect_args=connect_args)
    event.listen(engine.sync_engine.pool, "checkout", _ping)
    return engine


def _ping(_dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection) -> None:
    """pool_pre_ping in one round trip, not asyncpg's three (BEGIN, the query, ROLLBACK), on every
    checkout: a connection the database dropped (a restart, an outage) is replaced before it is
    used, and every other pooled connection with it, as pool_pre_ping does."""
    driver_connection = record.driver_connection
    if driver_connection is None:  # checked out, so connected: never taken
        raise InvalidatePoolError("connection has no driver connection")
    try:
        await_only(driver_connection.execute("SELECT 1"))  # simple query protocol: no prepared statement
    except Exception as exc:
        raise InvalidatePoolError(f"connection failed its ping: {exc!r}") from exc


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry, synchronous: str = "FULL") -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_reset(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, state: PoolResetState) -> None:
    """A connection back in the pool is rolled back only if SQLite still has a transaction open.
    The pool's default calls rollback() every time, also after a commit, where sqlite3 does
    nothing: one more trip to aiosqlite's thread per transaction, for nothing."""
    driver_connection = record.driver_connection
    if (state.asyncio_safe and not state.transaction_was_reset and driver_connection is not None
            and driver_connection.in_transaction):
        dbapi_connection.rollback()


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
