"""The delivery worker: takes due jobs, renders and signs the payload, POSTs it, logs the attempt,
and decides what happens next (delivered, retry later, give up)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from conduit.clock import now
from conduit.config import Settings
from conduit.db.engine import run_transaction, transaction
from conduit.db.group_commit import GroupCommit
from conduit.delivery import queue, rate_limit
from conduit.delivery.http import HttpOutcome, WebhookClient
from conduit.delivery.outcomes import Attempt, record_attempts
from conduit.delivery.render import render_body, signed_headers
from conduit.delivery.retry import decide, parse_retry_after
from conduit.services.crypto import Crypto

log = logging.getLogger("conduit.worker")
IDLE_POLL = 1.0  # seconds between looks at the queue when nothing woke us
MIN_SLEEP = 0.02  # seconds: never spin on a job that is due but could not be claimed
CLAIM_BATCH = 50
INACTIVE_RECHECK = 60.0  # seconds between looks at a paused webhook's queued mail


@dataclass(eq=False)
class _ClaimRequest:
    """A look at the queue, for up to ``limit`` due jobs, made in the recorder's next transaction
    (``claimed`` is set there) so that a claim and the records waiting beside it share one."""

    limit: int
    claimed: list[queue.Claimed] = field(default_factory=list)


@dataclass
class Worker:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    crypto: Crypto
    client: WebhookClient

    def __post_init__(self) -> None:
        # A job outlives its worker by this much: longer than one attempt can take (the HTTP
        # timeout bounds it), short enough that a crashed worker's jobs resume quickly.
        self.lease = timedelta(seconds=self.settings.delivery_timeout + 5)
        self.retry_delays = self.settings.retry_delays  # parsed once: it was 1.4 % of the worker's CPU
        self.wake = asyncio.Event()
        # Attempts that finish while a commit runs are recorded together in the next one, and
        # the loop's claims join the same transactions: under load a claim costs no transaction
        # (and no turn at SQLite's one write lock) of its own. The worker's commits need not wait
        # for the disk: one undone by a machine crash means a job delivered again
        # (at-least-once), never mail lost (run_transaction's ``durable``).
        self.recorder: GroupCommit[Attempt | _ClaimRequest] = GroupCommit(
            self.sessions, self._record_and_claim, durable=False)
        self._in_flight: set[asyncio.Task[None]] = set()
        # The last look at the queue left due jobs behind for want of free slots: a delivery that
        # ends frees one for them. Otherwise an ending delivery needs no look at the queue (an
        # empty claim and a next-due query per delivery, under light load).
        self._slots_wanted = False

    def notify(self) -> None:
        """New mail was committed (said by an in-process SMTP server, serve's wake pipe or
        PostgreSQL NOTIFY): look at the queue now."""
        self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("event=role_started role=worker concurrency=%d", self.settings.worker_concurrency)
        while not stop.is_set():
            # Cleared before looking, so a notify() that races with the claim is not lost.
            self.wake.clear()
            free = self.settings.worker_concurrency - len(self._in_flight)
            jobs: list[queue.Claimed] = []
            claim_failed = False
            if free > 0:
                try:
                    jobs = await self._claim(min(free, CLAIM_BATCH))
                except Exception as exc:  # noqa: BLE001 - database down: wait and try again
                    log.error("event=claim_failed error=%r", exc)
                    claim_failed = True
            self._slots_wanted = free <= 0 or len(jobs) == min(free, CLAIM_BATCH)
            for job in jobs:
                task = asyncio.create_task(self.deliver(*job))
                self._in_flight.add(task)
                task.add_done_callback(self._done)
            if free <= 0 or len(jobs) < min(free, CLAIM_BATCH):  # no free slot, or queue drained: wait
                # After a failed claim (a read-only or full disk still answers reads): a full
                # IDLE_POLL, not the next due job's time, or the worker would retry in a tight loop.
                timeout = await self._until_next_due() if free > 0 and not jobs and not claim_failed else IDLE_POLL
                await _wait_any(stop, self.wake, timeout=timeout)
        await self.drain()

    async def _until_next_due(self) -> float:
        """Seconds to sleep with nothing due: until the earliest retry, at most IDLE_POLL (other
        processes may queue mail without waking this one)."""
        try:
            async with self.sessions() as db:  # a read: no transaction, no turn at SQLite's writers' lock
                due = await db.run_sync(queue.next_due_at)
        except Exception:  # noqa: BLE001 - the next claim reports a database problem
            return IDLE_POLL
        if due is None:
            return IDLE_POLL
        return min(IDLE_POLL, max(MIN_SLEEP, (due - now()).total_seconds()))

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

    async def _claim(self, limit: int) -> list[queue.Claimed]:
        """Lease due jobs, with their messages and webhooks (``queue.claim``), in the recorder's
        next transaction."""
        request = _ClaimRequest(limit)
        await self.recorder.write(request)
        return request.claimed

    def _record_and_claim(self, db: Session, items: list[Attempt | _ClaimRequest]) -> None:
        if attempts := [item for item in items if isinstance(item, Attempt)]:
            record_attempts(db, attempts, settings=self.settings)
        for request in items:
            if isinstance(request, _ClaimRequest):
                request.claimed = queue.claim(db, limit=request.limit, lease=self.lease)

    async def deliver(self, job: queue.JobRow, message: queue.MessageRow, webhook: queue.WebhookRow) -> None:
        if not webhook.active:
            # Paused (by its owner, or after 410): hold the mail until the webhook is reactivated.
            await run_transaction(self.sessions, queue.retry_later, job, delay=INACTIVE_RECHECK, count_attempt=False,
                                  error="webhook is inactive; delivery resumes when it is reactivated", durable=False)
            return
        if webhook.rate_limit:
            async with transaction(self.sessions) as db:
                wait = await rate_limit.take(db, webhook.id, webhook.rate_limit)
                if wait:
                    await db.run_sync(queue.retry_later, job, delay=wait, error="rate limited", count_attempt=False)
            if wait:
                self._due_soon(wait)
                return
        started = time.monotonic()
        try:
            body, content_type = await render_body(message, webhook, rcpt_to=job.rcpt_to, settings=self.settings,
                                                   simulated=False)
        except Exception as exc:  # noqa: BLE001 - a broken template fails this attempt, not the worker
            outcome = HttpOutcome(status=None, duration_ms=int((time.monotonic() - started) * 1000),
                                  error=f"payload could not be rendered: {exc}", response_excerpt="",
                                  retry_after=None)
        else:
            headers = signed_headers(webhook, self.crypto, msg_id=job.id, body=body, content_type=content_type)
            outcome = await self.client.post(webhook.target_url, body, headers)
        decision = decide(status=outcome.status, error=outcome.error, attempt=job.attempts,
                          retry_after=parse_retry_after(outcome.retry_after, now()),
                          schedule=self.retry_delays)
        await self.recorder.write(Attempt(job=job, message=message, webhook=webhook, outcome=outcome,
                                          decision=decision))
        log.info("event=delivery_attempt job=%s webhook=%s status=%s attempt=%d", job.id, webhook.id,
                 outcome.status, job.attempts)
        if decision.retry_in is not None:
            self._due_soon(decision.retry_in)

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

