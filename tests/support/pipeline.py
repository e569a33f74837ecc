"""Run Conduit's SMTP server and delivery worker in the test's event loop, exactly as
`conduit serve` runs them (conduit.runtime.run), on free ports."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from conduit import runtime
from conduit.config import Settings
from conduit.services.route_cache import RouteChanges
from conduit.storage.database import Database


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, for a server the test starts
    later. Taken below the kernel's ephemeral range, so that an outgoing connection (to
    PostgreSQL, to a receiver) cannot be given the same port in between; random, so that tests
    running side by side rarely pick the same."""
    low, _ = _ephemeral_range()
    for _ in range(200):
        port = random.randrange(10000, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port below the ephemeral range")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


async def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


@asynccontextmanager
async def running(settings: Settings, roles: frozenset[str] = frozenset({"smtp", "worker"}),
                  database: Database | None = None) -> AsyncIterator[None]:
    """The roles, until the block ends. ``database``: the test's own (that of its in-process API),
    whose commits the SMTP server's route cache hears of, as `conduit serve`'s API shares its
    Database with its SMTP server."""
    changes = RouteChanges()
    if database is not None:
        changes.watch(database)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(settings, roles=roles, stop=stop, route_changes=changes))
    try:
        if "smtp" in roles:
            await wait_for_port(settings.smtp_port)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
