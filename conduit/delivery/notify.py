"""New jobs announced to workers in other processes, on PostgreSQL: the transaction that queues
jobs sends ``NOTIFY conduit_jobs`` (delivered when it commits), and every worker LISTENs on a
connection of its own and looks at the queue at once. Without it (SQLite, or the listening
connection lost) workers still find new jobs at their next poll, within a second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

log = logging.getLogger("conduit.worker")
CHANNEL = "conduit_jobs"
RECONNECT_AFTER = 5.0  # seconds


def announce(session: Session) -> None:
    """In the transaction that queues jobs: wake listening workers once it commits."""
    if session.bind.dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {CHANNEL}"))


async def listen(database_url: str, wake: Callable[[], None], stop: asyncio.Event) -> None:
    """Call ``wake`` on every announcement until ``stop``; reconnect when the connection drops."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    while not stop.is_set():
        lost = asyncio.Event()
        try:
            connection = await asyncpg.connect(dsn, timeout=10)
        except Exception as exc:  # noqa: BLE001 - the database is down: polling goes on meanwhile
            log.warning("event=listen_failed error=%r", exc)
        else:
            try:
                connection.add_termination_listener(lambda _: lost.set())
                await connection.add_listener(CHANNEL, lambda *_: wake())
                wake()  # jobs queued while nobody listened
                await _first_of(stop.wait(), lost.wait())
            except Exception as exc:  # noqa: BLE001
                log.warning("event=listen_failed error=%r", exc)
            finally:
                if not connection.is_closed():
                    await connection.close(timeout=5)
        if not stop.is_set():
            await _first_of(stop.wait(), asyncio.sleep(RECONNECT_AFTER))


async def _first_of(*waits) -> None:  # noqa: ANN002
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
