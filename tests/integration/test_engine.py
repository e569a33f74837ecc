"""The engine's connection pool against the real database: a pooled connection that the database
has dropped (a restart, an administrator, an outage) is replaced before a transaction uses it."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url


async def test_a_connection_the_database_dropped_is_replaced_before_use(database_url, database):
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL: SQLite has no server to drop a connection")
    async with database.transaction() as db:
        pid = await db.scalar(text("SELECT pg_backend_pid()"))
    admin = await asyncpg.connect(make_url(database_url).set(drivername="postgresql")
                                  .render_as_string(hide_password=False))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)  # waits until it is gone
    finally:
        await admin.close()

    async with database.transaction() as db:  # the pool's only connection is the dropped one
        assert await db.scalar(text("SELECT pg_backend_pid()")) != pid

