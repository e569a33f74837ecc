"""The delivery worker: takes due jobs, renders and signs the payload, POSTs it, logs the attempt,
and decides what happens next (delivered, retry later, give up)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from conduit.clock import now
from conduit.config import Settings
from conduit.crypto import Crypto
from conduit.isolation import RenderPool
from conduit.net.http_transport import HttpOutcome, WebhookTransport
from conduit.observability import metrics
from conduit.services import rate_limit
from conduit.services.deliveries import Attempt, attempt, record_attempts
from conduit.services.retry import decide, parse_retry_after
from conduit.storage.database import Database
from conduit.storage.group_commit import GroupCommit
from conduit.storage.interfaces import Claimed, JobRow, MessageRow, WebhookRow

log = logging.getLogger("conduit.worker")
IDLE_POLL = 1.0  # seconds between looks at the queue when nothing woke us
MIN_SLEEP = 0.02  # seconds: never spin on a job that is due but could not be claimed
CLAIM_BATCH = 50
INACTIVE_RECHECK = 60.0  # seconds between looks at a paused webhook's queued mail
# Seconds a delivery's rendering may take beside its POST (a parse, then a template or a second,
# lighter parse, each bounded by CONDUIT_RENDER_TIMEOUT): the renderer pool kills or fails what
# runs past it.
RENDER_WINDOW = 4.0
RENEWALS_PER_LEASE = 3  # looks at the leases in flight this often per lease period


@dataclass(eq=False)
class _ClaimRequest:
    """A look at the queue, for up to ``limit`` due jobs, made in the recorder's next transaction
    (``claimed`` is set there) so that a claim and the records waiting beside it share one."""

    limit: int
    claimed: list[Claimed] = field(default_factory=list)
    # When the claim found nothing: when the earliest queued job no worker holds is due (None: no
    # such job), read in the same transaction rather than in one of its own.
    next_due: datetime | None = None


@dataclass(eq=False)
class _Renewal:
    """Live attempts' jobs, whose leases are extended in the recorder's next transaction
    (``renewed`` is set there: the new lease of each job that still held one)."""

    jobs: list[JobRow]
    renewed: dict[str, datetime] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Worker:
    settings: Settings
    database: Database
    crypto: Crypto
    client: WebhookTransport
    renders: RenderPool

    def __post_init__(self) -> None:
        # A job outlives a worker that died by this much (CONDUIT_DELIVERY_LEASE); a live
        # attempt renews it, so no attempt, however slow, sees its job taken again.
        self.lease = timedelta(seconds=self.settings.delivery_lease)
        self.render_window = RENDER_WINDOW
        self.queue = self.database.queue
        self.retry_delays = self.settings.retry_delays  # parsed once: it was 1.4 % of the worker's CPU
        self.wake = asyncio.Event()
        # Attempts that finish while a commit runs are recorded together in the next one, and
        # the loop's claims join the same transactions: under load a claim costs no transaction
        # (and no turn at SQLite's one write lock) of its own. The worker's commits need not wait
        # for the disk: one undone by a machine crash means a job delivered again
        # (at-least-once), never mail lost (``Database.run``'s ``durable``).
        self.recorder: GroupCommit[Attempt | _ClaimRequest | _Renewal] = GroupCommit(
            self.database, self._record_and_claim, durable=False)
        self._in_flight: set[asyncio.Task[None]] = set()
        # The last look at the queue left due jobs behind for want of free slots: a delivery that
        # ends frees one for them. Otherwise an ending delivery needs no look at the queue (an
        # empty claim and a next-due query per delivery, under light load).
        self._slots_wanted = False
        # The jobs of the attempts in flight, by (id, the lease they were claimed with), each
        # with the lease it holds now (renewed by _keep_leases); the renewal being committed.
        self._held: dict[tuple[str, datetime | None], JobRow] = {}
        self._per_webhook: Counter[str] = Counter()  # this worker's deliveries in flight per webhook
        self._renewing: _Renewal | None = None

    def notify(self) -> None:
        """New mail was committed (said by an in-process SMTP server, serve's wake pipe or
        PostgreSQL NOTIFY): look at the queue now."""
        self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("event=role_started role=worker concurrency=%d", self.settings.worker_concurrency)
        drained = asyncio.Event()
        keeper = asyncio.create_task(self._keep_leases(drained), name="leases")
        try:
            await self._take_jobs(stop)
            await self.drain()
        finally:
            drained.set()
            await keeper

    async def _take_jobs(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Cleared before looking, so a notify() that races with the claim is not lost.
            self.wake.clear()
            free = self.settings.worker_concurrency - len(self._in_flight)
            jobs: list[Claimed] = []
            next_due: datetime | None = None
            claim_failed = False
            if free > 0:
                try:
                    look = await self._look(min(free, CLAIM_BATCH))
                    jobs, next_due = look.claimed, look.next_due
                except Exception as exc:  # noqa: BLE001 - database down: wait and try again
                    log.error("event=claim_failed error=%r", exc)
                    claim_failed = True
            for job in jobs:
                self._per_webhook[job[2].id] += 1
                task = asyncio.create_task(self.deliver(*job))
                self._in_flight.add(task)
                task.add_done_callback(self._done)
            # A webhook this worker fills to its cap may have more due jobs left behind.
            capped = any(self._per_webhook[webhook.id] >= self.settings.webhook_concurrency for _, _, webhook in jobs)
            self._slots_wanted = free <= 0 or len(jobs) == min(free, CLAIM_BATCH) or capped
            if free <= 0 or len(jobs) < min(free, CLAIM_BATCH):  # no free slot, or queue drained: wait
                # After a failed claim (a read-only or full disk still answers reads): a full
                # IDLE_POLL, not the next due job's time, or the worker would retry in a tight loop.
                timeout = self._until(next_due) if free > 0 and not jobs and not claim_failed else IDLE_POLL
                await _wait_any(stop, self.wake, timeout=timeout)

    def _until(self, due: datetime | None) -> float:
        """Seconds to sleep after a claim that found nothing: until the earliest retry (``due``), at
        most IDLE_POLL (other processes may queue mail without waking this one). Jobs due already
        were left behind because their webhooks are at CONDUIT_WEBHOOK_CONCURRENCY: a delivery
        that ends frees a slot for them, and wakes the loop."""
        if due is None:
            return IDLE_POLL
        wait = (due - now()).total_seconds()
        if wait <= 0:
            self._slots_wanted = True
            return IDLE_POLL
        return min(IDLE_POLL, max(MIN_SLEEP, wait))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._slots_wanted:
            self.wake.set()  # a slot is free for them
        if not task.cancelled() and task.exception() is not None:
            log.error("event=delivery_crashed error=%r", task.exception())

    async def drain(self) -> None:
        """Let deliveries in flight finish (bounded by the HTTP timeout); the rest keep their lease."""
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self.settings.delivery_timeout + 5)

    async def _claim(self, limit: int) -> list[Claimed]:
        """Lease due jobs, with their messages and webhooks (the queue's ``claim``), in the
        recorder's next transaction."""
        return (await self._look(limit)).claimed

    async def _look(self, limit: int) -> _ClaimRequest:
        """A claim, and the next due time if it found nothing."""
        request = _ClaimRequest(limit)
        await self.recorder.write(request)
        return request

    def _record_and_claim(self, db: Session, items: Sequence[Attempt | _ClaimRequest | _Renewal]) -> None:
        if attempts := [item for item in items if isinstance(item, Attempt)]:
            record_attempts(self.queue, db, attempts, settings=self.settings)
        for renewal in items:
            if isinstance(renewal, _Renewal):
                renewal.renewed = self.queue.renew(db, renewal.jobs, lease=self.lease)
        for request in items:
            if isinstance(request, _ClaimRequest):
                request.claimed = self.queue.claim(db, limit=request.limit, lease=self.lease,
                                                   per_webhook=self.settings.webhook_concurrency)
                if not request.claimed:
                    request.next_due = self.queue.next_due_at(db)

    async def deliver(self, job: JobRow, message: MessageRow, webhook: WebhookRow) -> None:
        try:
            await self._deliver(job, message, webhook)
        finally:
            self._per_webhook[webhook.id] -= 1
            if not self._per_webhook[webhook.id]:
                del self._per_webhook[webhook.id]

    async def _deliver(self, job: JobRow, message: MessageRow, webhook: WebhookRow) -> None:
        if not webhook.active:
            # Paused (by its owner, or after 410): hold the mail until the webhook is reactivated.
            await self.database.run(self.queue.reschedule, job, delay=INACTIVE_RECHECK, count_attempt=False,
                                    error="webhook is inactive; delivery resumes when it is reactivated",
                                    durable=False)
            return
        if webhook.rate_limit:
            async with self.database.transaction() as db:
                wait = await rate_limit.take(db, webhook.id, webhook.rate_limit)
                if wait:
                    await db.run_sync(self.queue.reschedule, job, delay=wait, error="rate limited",
                                      count_attempt=False)
            if wait:
                self._due_soon(wait)
                return
        claim = (job.id, job.locked_until)
        self._held[claim] = job
        try:
            outcome = await self._attempt(job, message, webhook)
        finally:
            job = await self._release(claim)
        decision = decide(status=outcome.status, error=outcome.error, attempt=job.attempts,
                          retry_after=parse_retry_after(outcome.retry_after, now()),
                          schedule=self.retry_delays)
        if self._slots_wanted:
            # Due jobs wait for a slot, of the worker or of this webhook: the loop's claim joins
            # the transaction that records this attempt, after it, and takes the slot it frees.
            self.wake.set()
        await self.recorder.write(Attempt(job=job, message=message, webhook=webhook, outcome=outcome,
                                          decision=decision))
        metrics.delivery_attempt(outcome.status, accepted_at=message.received_at, outcome=(
            "delivered" if decision.delivered else "failed" if decision.give_up else "retrying"))
        log.info("event=delivery_attempt job=%s webhook=%s status=%s attempt=%d", job.id, webhook.id,
                 outcome.status, job.attempts)
        if decision.retry_in is not None:
            self._due_soon(decision.retry_in)

    async def _attempt(self, job: JobRow, message: MessageRow, webhook: WebhookRow) -> HttpOutcome:
        return await attempt(job, message, webhook, renders=self.renders, crypto=self.crypto, client=self.client,
                             settings=self.settings, render_deadline=time.monotonic() + self.render_window)

    async def _keep_leases(self, drained: asyncio.Event) -> None:
        """Renew the leases of the attempts in flight before they run out, RENEWALS_PER_LEASE
        times per lease period, all in one statement, until the worker has drained: no attempt,
        however slow its receiver, sees its job claimed (and POSTed) a second time."""
        interval = self.lease.total_seconds() / RENEWALS_PER_LEASE
        while not drained.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(drained.wait(), interval)
            # Those with less than two periods left: renewed at least a period before they expire.
            soon = now() + self.lease - timedelta(seconds=interval)
            held = [(claim, job) for claim, job in self._held.items()
                    if job.locked_until is not None and job.locked_until < soon]
            if not held:
                continue
            renewal = self._renewing = _Renewal([job for _, job in held])
            try:
                await self.recorder.write(renewal)
            except Exception as exc:  # noqa: BLE001 - the database is down: tried again at the next turn
                log.warning("event=lease_renewal_failed jobs=%d error=%r", len(held), exc)
            else:
                for claim, job in held:
                    until = renewal.renewed.get(job.id)
                    if claim in self._held:
                        # None: taken over by another worker; this attempt will not be recorded.
                        self._held[claim] = job._replace(locked_until=until)
                    if until is None:
                        log.warning("event=lease_lost job=%s", job.id)
            finally:
                self._renewing = None
                renewal.done.set()

    async def _release(self, claim: tuple[str, datetime | None]) -> JobRow:
        """The job of an attempt that ended, with the lease it holds now: a renewal being
        committed is waited for, since its new lease is the one the record is checked against."""
        while (renewal := self._renewing) is not None and any(job.id == claim[0] for job in renewal.jobs):
            await renewal.done.wait()
        return self._held.pop(claim)

    def _due_soon(self, delay: float) -> None:
        """A job put back for ``delay`` seconds: if that is before the loop's next poll, the loop
        looks at the queue now and sleeps until the job is due."""
        if delay < IDLE_POLL:
            self.wake.set()


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, *, timeout: float) -> None:
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()

