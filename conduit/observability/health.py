"""Liveness and readiness. Live: the process answers. Ready: the database answers and its
schema is the one this version of Conduit needs (the migrations' head)."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from conduit.storage.migrate import alembic_config

CHECK_TIMEOUT = 3.0  # seconds the database has to answer a readiness check


@functools.cache
def schema_head() -> str | None:
    """The newest migration of this version of Conduit."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str  # why not, in a few words; "" when ready
    unreachable: bool = False


async def check(engine: AsyncEngine, *, timeout: float = CHECK_TIMEOUT) -> Readiness:
    """Whether the database answers, within ``timeout``, and has this version's schema."""
    try:
        async with asyncio.timeout(timeout), engine.connect() as connection:
            revision = await connection.run_sync(_revision)
    except Exception as exc:  # noqa: BLE001 - any failure means: not ready
        return Readiness(False, f"database unreachable: {type(exc).__name__}", unreachable=True)
    if revision != schema_head():
        return Readiness(False, f"database schema at {revision or 'none'}, this version needs {schema_head()}: "
                                "run `conduit migrate`")
    return Readiness(True, "")


async def check_url(database_url: str) -> Readiness:
    """``check`` on an engine of its own (at start-up, before the roles make theirs). A SQLite
    file that does not exist is not created: it is a database without a schema."""
    url = make_url(database_url)
    if url.drivername.startswith("sqlite") and url.database and url.database != ":memory:" \
            and not Path(url.database).exists():  # noqa: ASYNC240 - once, at start-up, before serving
        return Readiness(False, f"database schema at none, this version needs {schema_head()}: run `conduit migrate`")
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        return await check(engine)
    finally:
        await engine.dispose()
