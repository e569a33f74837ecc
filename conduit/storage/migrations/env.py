"""Alembic environment: runs migrations over the async engine of the configured database."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import conduit.storage.models  # noqa: F401 - registers every table
from conduit.storage.base import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:  # a caller handed us a sync connection (tests, autogenerate checks)
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise SystemExit("no database URL given to the migrations")
    asyncio.run(_run_async(url))


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `conduit migrate`")
run()
