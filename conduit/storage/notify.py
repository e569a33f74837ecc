"""New jobs announced to workers in other processes, on PostgreSQL: the transaction that queues
jobs sends ``NOTIFY conduit_jobs`` (delivered when it commits), and every worker LISTENs on a
connection of its own and looks at the queue at once. Without it (SQLite, or the listening
connection lost) workers still find new jobs at their next poll, within a second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

log = logging.getLogger("conduit.worker")
JOBS_CHANNEL = "conduit_jobs"
RECONNECT_AFTER = 5.0  # seconds


async def listen(database_url: str, wake: Callable[[], None], stop: asyncio.Event, *,
                 channel: str = JOBS_CHANNEL) -> None:
    """Call ``wake`` on every announcement until ``stop``, and once on each (re)connection for
    what it may have missed; reconnect when the connection drops."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    while not stop.is_set():
        try:
            connection = await asyncpg.connect(dsn, timeout=10)
        except Exception as exc:  # noqa: BLE001 - the database is down: polling goes on meanwhile
            log.warning("event=listen_failed error=%r", exc)
        else:
            await _listen_on(connection, channel, wake, stop)
        if not stop.is_set():
            await _first_of(stop.wait(), asyncio.sleep(RECONNECT_AFTER))


async def _listen_on(connection: asyncpg.Connection, channel: str, wake: Callable[[], None],
                     stop: asyncio.Event) -> None:
    """Listen on one connection until ``stop`` or until the connection drops, then close it."""
    lost = asyncio.Event()

    def on_lost(_connection: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> None:
        lost.set()

    def on_notification(*_: object) -> None:
        wake()

    try:
        connection.add_termination_listener(on_lost)
        await connection.add_listener(channel, on_notification)
        wake()  # announced while nobody listened
        await _first_of(stop.wait(), lost.wait())
    except Exception as exc:  # noqa: BLE001 - a dropped connection is retried by the caller
        log.warning("event=listen_failed error=%r", exc)
    finally:
        if not connection.is_closed():
            await connection.close(timeout=5)


async def _first_of(*waits: Coroutine[Any, Any, object]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
