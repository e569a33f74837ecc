"""`conduit serve` on several cores: the API and the SMTP server run in this process, delivery
workers in child processes (CONDUIT_WORKER_PROCESSES; by default one on a multi-core machine).

Python runs one thread of Python code per process at a time, so a single process uses one core
however busy it is; mail parsing and delivery in their own process get the second. The children
are ``conduit worker`` processes started with a *wake pipe* each: after each commit the SMTP
server writes a byte to every pipe, and a worker reading it looks at the queue at once instead of
at its next poll. Each also gets a *routes pipe* the other way: a worker that changed routing
data (deactivated a webhook) writes a byte, and the SMTP server forgets its cached routes. A child
dies with its parent (``PR_SET_PDEATHSIG``), so a killed ``serve`` leaves no worker behind; a child
that exits on its own stops ``serve`` (with an error, for the service manager to restart it), since
mail would otherwise pile up undelivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

from conduit.config import Settings
from conduit.observability import metrics
from conduit.runtime import run
from conduit.wake import WakePipes

log = logging.getLogger("conduit.runtime")


async def serve(settings: Settings, *, config: str | None) -> None:
    """API + SMTP here, ``settings.serve_worker_processes()`` workers as children (none: in here)."""
    count = settings.serve_worker_processes()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if count == 0:
        await run(settings, roles=frozenset({"api", "smtp", "worker"}), stop=stop)
        return
    children = []
    write_fds = []
    route_change_fds = []
    for _ in range(count):
        read_fd, write_fd = os.pipe()
        routes_read_fd, routes_write_fd = os.pipe()
        args = [sys.executable, "-m", "conduit", *(["--config", config] if config else []), "worker",
                "--wake-fd", str(read_fd), "--routes-fd", str(routes_write_fd), "--parent-pid", str(os.getpid())]
        children.append(await asyncio.create_subprocess_exec(*args, pass_fds=(read_fd, routes_write_fd)))
        os.close(read_fd)
        os.close(routes_write_fd)
        write_fds.append(write_fd)
        route_change_fds.append(routes_read_fd)
    pipes = WakePipes(write_fds)
    log.info("event=worker_processes_started count=%d pids=%s", count, ",".join(str(c.pid) for c in children))
    failed: list[int] = []

    async def watch(child: asyncio.subprocess.Process) -> None:
        code = await child.wait()
        metrics.process_exited(child.pid)
        if not stop.is_set():
            log.error("event=worker_process_exited pid=%d code=%s", child.pid, code)
            failed.append(child.pid)
            stop.set()

    watchers = [asyncio.create_task(watch(child)) for child in children]
    try:
        await run(settings, roles=frozenset({"api", "smtp"}), stop=stop, on_accepted=pipes.notify,
                  route_change_fds=tuple(route_change_fds))
    finally:
        stop.set()
        for child in children:
            if child.returncode is None:
                child.terminate()
        # Workers let deliveries in flight finish (bounded by the HTTP timeout), then exit.
        grace = settings.delivery_timeout + 10
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(c.wait() for c in children)), grace)
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
        for task in watchers:
            task.cancel()
        pipes.close()
        for fd in route_change_fds:
            os.close(fd)
    if failed:
        raise RuntimeError(f"worker process {failed[0]} exited; serve stopped so that it can be restarted whole")
