"""Starts the roles in one asyncio loop and shuts them down in order on SIGTERM/SIGINT.

Roles share nothing but the database: ``api`` (HTTP), ``smtp`` (inbound mail) and ``worker``
(deliveries), plus periodic maintenance. New mail wakes the worker at once: directly when the
SMTP server and the worker share a process, through `conduit serve`'s wake pipe for its worker
processes (conduit/wake.py), and by PostgreSQL NOTIFY for workers anywhere else
(the Database's ``listen``); otherwise workers look at the queue at least once a second.

A change to routing data (a webhook deactivated, a policy changed) reaches the SMTP server's
route cache the same ways, the other way round: from this process's own commits, from `conduit
serve`'s worker processes through a pipe of their own, from anywhere by PostgreSQL NOTIFY
(conduit/services/route_cache.py).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from functools import partial

from conduit.config import Settings
from conduit.crypto import Crypto
from conduit.isolation import RenderPool
from conduit.mail.authentication import InboundChecks
from conduit.net.rspamd import RspamdClient
from conduit.observability import metrics
from conduit.services import maintenance, messages, synchronous
from conduit.services.deliveries import webhook_client
from conduit.services.refusals import RefusalRecorder
from conduit.services.route_cache import ROUTES_CHANNEL, RouteCache, RouteChanges
from conduit.smtp import server as smtp_server
from conduit.smtp.handler import SmtpContext
from conduit.storage.database import open_database
from conduit.storage.group_commit import GroupCommit
from conduit.storage.notify import JOBS_CHANNEL
from conduit.wake import WakePipes, listen_for_wakes
from conduit.worker.loop import Worker

log = logging.getLogger("conduit.runtime")
ROLES = frozenset({"api", "smtp", "worker"})
RENDERERS_START_TIMEOUT = 30.0  # seconds the worker waits for its renderer processes before it starts anyway


async def _every(seconds: int, job: Callable[[], Awaitable[None]]) -> None:
    while True:
        try:
            await job()
        except Exception:
            log.exception("event=maintenance_failed")
        await asyncio.sleep(seconds)


async def run(settings: Settings, *, roles: frozenset[str], stop: asyncio.Event | None = None,
              on_accepted: Callable[[], None] | None = None, wake_fd: int | None = None,
              routes_fd: int | None = None, route_change_fds: tuple[int, ...] = (),
              route_changes: RouteChanges | None = None) -> None:
    """Run the roles until ``stop`` is set (by default: until SIGTERM or SIGINT).

    `conduit serve`'s worker processes (conduit/wake.py): ``on_accepted`` tells them about new
    mail (SMTP role), and a worker reads such news from ``wake_fd``; a worker writes to
    ``routes_fd`` when it changed routing data, and the SMTP role reads ``route_change_fds``.
    ``route_changes`` may be shared with code that writes through another engine in this process.
    """
    metrics.configure(enabled=settings.metrics)
    # A process that takes no mail commits lazily: it writes nothing a crash may not undo. A worker
    # frozen inside a transaction for half a lease gives up what it held (PostgreSQL ends its
    # session): its transactions never wait on anything but the database.
    worker_only = roles == {"worker"}
    database = open_database(settings, lazy_commits=worker_only,
                             idle_transaction_timeout=settings.delivery_lease / 2 if worker_only else None)
    crypto = Crypto(settings.secret_key, settings.previous_secret_key_list)
    route_changes = route_changes or RouteChanges()
    route_changes.watch(database)
    if routes_fd is not None:
        route_changes.subscribe(WakePipes([routes_fd]).notify)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

    async def housekeeping() -> None:
        async with database.transaction() as session:
            await maintenance.purge_expired(session, settings=settings)
        await maintenance.purge_messages(database, settings=settings)

    tasks: list[asyncio.Task[None]] = []
    worker = client = None
    # Parsing and templates run in renderer processes, one pool per process that renders. The
    # worker's starts now, with a spare process (hostile mail gets processes killed; no delivery
    # waits for one to start); the API's (simulate, template checks) starts at first use.
    renders = None
    if "worker" in roles:
        renders = RenderPool.from_settings(settings, spare=True)
        # Before the worker claims jobs: a job's lease would otherwise tick while its render
        # waits for a process to start.
        if not await renders.wait_ready(RENDERERS_START_TIMEOUT):
            log.error("event=render_processes_not_ready timeout=%s", RENDERERS_START_TIMEOUT)
    elif "api" in roles:
        renders = RenderPool.from_settings(settings)
    if "worker" in roles:
        assert renders is not None
        client = webhook_client(settings)
        worker = Worker(settings=settings, database=database, crypto=crypto, client=client, renders=renders)
        tasks.append(asyncio.create_task(worker.run(stop), name="worker"))
        if wake_fd is not None:
            listen_for_wakes(wake_fd, worker.notify)
        if database.listens:
            tasks.append(asyncio.create_task(database.listen(JOBS_CHANNEL, worker.notify, stop), name="listen"))
    smtp = spam = refused = sync_client = None
    if "smtp" in roles:
        checks = InboundChecks(settings.dns_server_list, timeout=settings.dns_timeout,
                               cache_size=settings.inbound_auth_dns_cache_size)
        committer = GroupCommit(database, partial(messages.accept_batch, database.queue), size_of=lambda m: len(m.raw))
        if settings.rspamd_url:
            spam = RspamdClient(settings.rspamd_url, timeout=settings.rspamd_timeout)
            log.info("event=spam_check_on url=%s timeout=%s fail=%s", settings.rspamd_url, settings.rspamd_timeout,
                     settings.rspamd_fail)
        # Synchronous webhooks are delivered from here, as the worker delivers: renderer processes
        # (the worker's or the API's pool in this process, else one started at first use) and a
        # transport of its own.
        renders = renders or RenderPool.from_settings(settings)
        sync_client = webhook_client(settings)
        sync = synchronous.SyncContext(settings=settings, database=database, committer=committer, renders=renders,
                                       crypto=crypto, client=sync_client)
        routes = RouteCache(settings.route_cache_seconds, route_changes)
        refused = RefusalRecorder(database, cap=settings.refusals_per_hour, routes=routes)
        ctx = SmtpContext(settings=settings, database=database, committer=committer, checks=checks, routes=routes,
                          on_accepted=worker.notify if worker else (on_accepted or (lambda: None)), spam=spam,
                          refusals=refused, sync=sync)
        for fd in route_change_fds:
            listen_for_wakes(fd, route_changes.changed)
        if database.listens:
            tasks.append(asyncio.create_task(database.listen(ROUTES_CHANNEL, route_changes.changed, stop),
                                             name="listen_routes"))
        smtp = await smtp_server.start(ctx)
    api = None
    if "api" in roles:
        from conduit.api.server import api_server

        assert renders is not None
        api = api_server(settings, database, renders)
    if api is not None:
        tasks.append(asyncio.create_task(api.serve(), name="api"))
        log.info("event=role_started role=api url=http://%s:%s", settings.http_host, settings.http_port)
    probes = None
    if settings.metrics_port:
        from conduit.observability.server import probe_server

        probes = probe_server(settings, database)
        tasks.append(asyncio.create_task(probes.serve(), name="probes"))
        log.info("event=role_started role=probes url=http://%s:%s", settings.http_host, settings.metrics_port)
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
    if probes is not None:
        probes.should_exit = True
    for task in tasks:
        if task.get_name() == "maintenance":
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for fd in route_change_fds:
        asyncio.get_running_loop().remove_reader(fd)
    stopper.cancel()
    if refused is not None:
        await refused.drain()
    if client is not None:
        await client.close()
    if sync_client is not None:
        await sync_client.close()
    if spam is not None:
        await spam.close()
    if api is not None:
        await api.context.http.close()
    if renders is not None:
        await renders.close()
    await database.dispose()
    for failure in failed:
        error = failure.exception()
        assert error is not None  # only tasks that raised are in failed
        raise error
