"""Engines per dialect, sessions, and the one transaction boundary."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import event
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_only


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout, foreign keys and full fsync."""
    if database_url.startswith("sqlite"):
        engine = create_async_engine(database_url, connect_args={"timeout": 30}, pool_reset_on_return=None)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine.pool, "reset", _sqlite_reset)
        return engine
    engine = create_async_engine(database_url, pool_size=pool_size, max_overflow=pool_size)
    event.listen(engine.sync_engine.pool, "checkout", _ping)
    return engine


def _ping(dbapi_connection, record, proxy) -> None:  # noqa: ANN001, ARG001 - pool event arguments
    """pool_pre_ping in one round trip, not asyncpg's three (BEGIN, the query, ROLLBACK), on every
    checkout: a connection the database dropped (a restart, an outage) is replaced before it is
    used, and every other pooled connection with it, as pool_pre_ping does."""
    try:
        await_only(record.driver_connection.execute("SELECT 1"))  # simple query protocol: no prepared statement
    except Exception as exc:  # noqa: BLE001 - any failure means the connection is not usable
        raise InvalidatePoolError(f"connection failed its ping: {exc!r}") from exc


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI connection
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
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
