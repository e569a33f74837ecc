"""Run Conduit's SMTP server and delivery worker in the test's event loop, exactly as
`conduit serve` runs them (conduit.runtime.run), on free ports."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from conduit import runtime
from conduit.config import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
async def running(settings: Settings, roles: frozenset[str] = frozenset({"smtp", "worker"})) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(settings, roles=roles, stop=stop))
    try:
        if "smtp" in roles:
            await wait_for_port(settings.smtp_port)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
