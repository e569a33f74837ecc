"""Starts the roles in one asyncio loop and shuts them down in order on SIGTERM/SIGINT.

Roles share nothing but the database: ``api`` (HTTP), ``smtp`` (inbound mail) and ``worker``
(deliveries), plus periodic maintenance. New mail wakes the worker at once: directly when the
SMTP server and the worker share a process, through `conduit serve`'s wake pipe for its worker
processes (conduit/wake.py), and by PostgreSQL NOTIFY for workers anywhere else
(conduit/delivery/notify.py); otherwise workers look at the queue at least once a second.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable


from conduit.config import Settings
from conduit.db.engine import create_engine, session_factory, transaction
from conduit.db.group_commit import GroupCommit
from conduit.delivery import notify
from conduit.delivery.http import delivery_client
from conduit.delivery.worker import Worker
from conduit.services import maintenance, messages
from conduit.services.crypto import Crypto
from conduit.smtp import server as smtp_server
from conduit.smtp.authchecks import DnsForChecks, install_spf_dns
from conduit.smtp.handler import SmtpContext
from conduit.wake import listen_for_wakes

log = logging.getLogger("conduit.runtime")
ROLES = frozenset({"api", "smtp", "worker"})


async def _every(seconds: int, job: Callable[[], Awaitable[None]]) -> None:
    while True:
        try:
            await job()
        except Exception:  # noqa: BLE001 - a failed run is logged and retried next period
            log.exception("event=maintenance_failed")
        await asyncio.sleep(seconds)


async def run(settings: Settings, *, roles: frozenset[str], stop: asyncio.Event | None = None,
              on_accepted: Callable[[], None] | None = None, wake_fd: int | None = None) -> None:
    """Run the roles until ``stop`` is set (by default: until SIGTERM or SIGINT).

    Workers in other processes: ``on_accepted`` tells them about new mail (SMTP role), and a
    worker reads such news from ``wake_fd`` (conduit/wake.py).
    """
    # A process that takes no mail commits lazily (create_engine): it writes nothing a crash may not undo.
    engine = create_engine(settings.database_url, lazy_commits=roles == {"worker"})
    sessions = session_factory(engine)
    crypto = Crypto(settings.secret_key, settings.previous_secret_key_list)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

    async def housekeeping() -> None:
        async with transaction(sessions) as session:
            await maintenance.purge_expired(session, settings=settings)

    tasks: list[asyncio.Task[None]] = []
    worker = client = None
    if "worker" in roles:
        client = delivery_client(settings)
        worker = Worker(settings=settings, sessions=sessions, crypto=crypto, client=client)
        tasks.append(asyncio.create_task(worker.run(stop), name="worker"))
        if wake_fd is not None:
            listen_for_wakes(wake_fd, worker.notify)
        if engine.dialect.name == "postgresql":
            tasks.append(asyncio.create_task(notify.listen(settings.database_url, worker.notify, stop), name="listen"))
    smtp = None
    if "smtp" in roles:
        dns_checks = DnsForChecks(settings.dns_server_list, settings.dns_timeout)
        install_spf_dns(dns_checks)
        committer = GroupCommit(sessions, messages.accept_batch, size_of=lambda m: len(m.raw))
        ctx = SmtpContext(settings=settings, sessions=sessions, committer=committer, dns=dns_checks,
                          on_accepted=worker.notify if worker else (on_accepted or (lambda: None)))
        smtp = await smtp_server.start(ctx)
    api = None
    if "api" in roles:
        from conduit.api.server import api_server

        api = api_server(settings, engine)
    if api is not None:
        tasks.append(asyncio.create_task(api.serve(), name="api"))
        log.info("event=role_started role=api url=http://%s:%s", settings.http_host, settings.http_port)
    tasks.append(asyncio.create_task(_every(settings.maintenance_interval, housekeeping), name="maintenance"))

    stopper = asyncio.create_task(stop.wait(), name="stop")
    done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    failed = [t for t in done if t is not stopper and not t.cancelled() and t.exception() is not None]
    log.info("event=shutting_down reason=%s", "role_failed" if failed else "signal")
    stop.set()
    # Order: stop taking mail and requests, let deliveries in flight finish, then the database.
    if smtp is not None:
        smtp.close()
    if api is not None:
        api.should_exit = True
    for task in tasks:
        if task.get_name() == "maintenance":
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    stopper.cancel()
    if client is not None:
        await client.close()
    if api is not None:
        await api.config.app.state.context.http.close()
    await engine.dispose()
    for task in failed:
        raise task.exception()  # type: ignore[misc]
