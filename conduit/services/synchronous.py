"""Synchronous delivery: for a webhook whose ``delivery_mode`` is "synchronous", the SMTP server
makes the first delivery attempt itself, after the message is stored and before it answers the
end of DATA, and the receiver's answer becomes the reply.

- 2xx: delivered, logged exactly as a queued delivery is (same payload, signature and log
  entry); the sender gets ``250``.
- 4xx other than 408 and 429: refused for good. The attempt is logged (``failed``, with the
  receiver's status), its job is finished as failed, and the sender gets ``550 5.7.1`` with the
  receiver's reason (``refusal_reason``).
- 408, 429, 5xx, 3xx, no answer within ``sync_timeout_ms``, no connection: deferred. The attempt
  is logged, nothing is queued, and the sender gets ``451 4.3.0``: it retries, and that retry is
  the next attempt. So this path never delivers a message twice.

One transaction has at most one synchronous webhook (the SMTP server defers the recipients of a
second one at RCPT), so one answer decides the reply. The transaction's queued-mode webhooks get
their jobs only when that answer is 2xx, in the transaction that records it: otherwise the whole
transaction is refused and the sender retries or bounces it for every recipient.

The message is stored (committed) before the attempt, without jobs; the jobs are written with
the answer. A crash in between leaves a message no job needs, which maintenance purges
(``PURGE_GRACE``), and a sender that got no reply, which retries. An answer that cannot be
recorded (the database fails then) is answered 451 like any failed commit: never 250 for what
is not stored, even though the receiver may then see the sender's retry too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from conduit.clock import now
from conduit.config import Settings
from conduit.crypto import Crypto
from conduit.isolation import RenderPool
from conduit.net.http_transport import HttpOutcome, WebhookTransport, first_line
from conduit.observability import metrics
from conduit.services import deliveries, messages, rate_limit
from conduit.services.retry import GONE, RETRYABLE_STATUSES
from conduit.storage.database import Database
from conduit.storage.group_commit import GroupCommit
from conduit.storage.interfaces import JobQueue, JobRow, MessageRow, WebhookRow, new_job
from conduit.storage.models import Webhook

log = logging.getLogger("conduit.smtp")
MAX_REASON_CHARS = 200
REASON_HEADER = "X-Conduit-Smtp-Reason"

Verdict = Literal["accepted", "refused", "deferred"]


@dataclass(frozen=True)
class SyncContext:
    """What a synchronous delivery needs: the SMTP server's database and group commit, and what
    the worker delivers with (renderer processes, the signing keys, the HTTP transport)."""

    settings: Settings
    database: Database
    committer: GroupCommit[messages.Incoming]
    renders: RenderPool
    crypto: Crypto
    client: WebhookTransport
    in_flight: set[asyncio.Future[tuple[Verdict, str, int | None]]] = field(default_factory=set)  # see deliver


@dataclass(frozen=True)
class SyncResult:
    """The outcome for the SMTP reply: ``reason`` is the receiver's refusal text (refused) or why
    the message was deferred, ``status`` the receiver's HTTP status (None: no answer);
    ``commit_seconds`` how long storing the message took (for the metrics)."""

    verdict: Verdict
    message_id: str
    reason: str = ""
    status: int | None = None
    commit_seconds: float = 0.0


def verdict_of(outcome: HttpOutcome) -> Verdict:
    status = outcome.status
    if status is not None and 200 <= status < 300:
        return "accepted"
    if status is not None and 400 <= status < 500 and status not in RETRYABLE_STATUSES:
        return "refused"
    return "deferred"


def sanitized(text: str) -> str:
    """``text`` as printable ASCII for an SMTP reply line: whitespace and control characters
    become single spaces, other characters ``?``; at most ``MAX_REASON_CHARS``."""
    cleaned = "".join(ch if " " <= ch <= "~" else " " if ch.isspace() or not ch.isprintable() else "?"
                      for ch in text)
    return " ".join(cleaned.split())[:MAX_REASON_CHARS].rstrip()


def refusal_reason(outcome: HttpOutcome) -> str:
    """The receiver's reason for refusing: its ``X-Conduit-Smtp-Reason`` header, else the first
    line of a text body (``text/*`` or no Content-Type), sanitized; "" when it gave none."""
    if outcome.smtp_reason is not None and (reason := sanitized(outcome.smtp_reason)):
        return reason
    content_type = (outcome.content_type or "text/plain").strip().lower()
    if content_type.startswith("text/"):
        return sanitized(first_line(outcome.response_excerpt))
    return ""


async def deliver(ctx: SyncContext, incoming: messages.Incoming, webhook_id: str) -> SyncResult:
    """Store ``incoming`` without jobs, make the first attempt to ``webhook_id`` (one of its
    targets, the synchronous one), then record the answer: the attempt's log entry and job, and
    the other targets' jobs if the answer is 2xx. Raises if the message could not be stored
    (nothing was attempted)."""
    stored = replace(incoming, targets={}, received_at=now())
    started = time.perf_counter()
    await ctx.committer.write(stored)
    commit_seconds = time.perf_counter() - started
    message = messages.stored_row(stored)
    queued = {target: recipients for target, recipients in incoming.targets.items() if target != webhook_id}
    job = JobRow(**new_job(stored.id, webhook_id, incoming.targets[webhook_id], now()))
    webhook = await _webhook(ctx.database, webhook_id)
    if webhook is None or not webhook.active:
        await _forget(ctx, message.id)
        return SyncResult("deferred", stored.id, reason="the webhook is paused or was deleted")
    deadline = time.monotonic() + webhook.sync_timeout_ms / 1000
    if webhook.rate_limit and not await _rate_allows(ctx.database, webhook, deadline):
        await _forget(ctx, message.id)
        return SyncResult("deferred", stored.id, reason="the webhook's rate limit is reached")
    # Once the POST may have left, it runs to its end and is recorded even if the sender hangs
    # up meanwhile (its session task is cancelled): the delivery log shows what the receiver saw.
    attempt = asyncio.ensure_future(_attempt_and_record(ctx, message, job, webhook, queued, deadline))
    ctx.in_flight.add(attempt)
    attempt.add_done_callback(_settled(ctx))
    verdict, reason, status = await asyncio.shield(attempt)
    return SyncResult(verdict, stored.id, reason=reason, status=status, commit_seconds=commit_seconds)


def _settled(ctx: SyncContext) -> Callable[[asyncio.Future[tuple[Verdict, str, int | None]]], None]:
    def done(attempt: asyncio.Future[tuple[Verdict, str, int | None]]) -> None:
        ctx.in_flight.discard(attempt)
        if not attempt.cancelled() and attempt.exception() is not None:  # retrieved: its caller may be gone
            log.error("event=synchronous_delivery_not_recorded error=%r", attempt.exception())
    return done


async def _attempt_and_record(ctx: SyncContext, message: MessageRow, job: JobRow, webhook: WebhookRow,
                              queued: dict[str, list[str]], deadline: float) -> tuple[Verdict, str, int | None]:
    outcome = await deliveries.attempt(job, message, webhook, renders=ctx.renders, crypto=ctx.crypto,
                                       client=ctx.client, settings=ctx.settings, render_deadline=deadline,
                                       post_deadline=deadline)
    verdict = verdict_of(outcome)
    reason = refusal_reason(outcome) if verdict == "refused" else (outcome.error or "")
    await ctx.database.run(partial(record, ctx.database.queue), message=message, job=job, webhook=webhook,
                           outcome=outcome, verdict=verdict, queued=queued,
                           keep_raw=ctx.settings.message_retention_days > 0)
    metrics.delivery_attempt(outcome.status, accepted_at=message.received_at,
                             outcome="delivered" if verdict == "accepted" else "failed")
    log.info("event=synchronous_delivery id=%s webhook=%s status=%s verdict=%s duration_ms=%d", message.id,
             webhook.id, outcome.status, verdict, outcome.duration_ms)
    return verdict, reason, outcome.status


def record(queue: JobQueue, session: Session, *, message: MessageRow, job: JobRow, webhook: WebhookRow,
           outcome: HttpOutcome, verdict: Verdict, queued: dict[str, list[str]], keep_raw: bool) -> None:
    """What the answer leaves behind, in one transaction: delivered, the job as the worker would
    have finished it and the other targets' jobs, queued; refused, the job finished as failed;
    deferred, no job at all. Each with the attempt's log entry; the message is dropped when no
    job needs it, unless ``keep_raw`` (messages are kept) and it was taken or refused: a
    deferred message was not taken, and its sender sends it again."""
    at = now()
    if verdict == "accepted":
        jobs = [job._replace(status="delivered", attempts=1, finished_at=at)._asdict(),
                *(new_job(message.id, target, recipients, at) for target, recipients in queued.items())]
        entry = deliveries.log_row(webhook_id=webhook.id, outcome=outcome, status="delivered",
                                   sender=message.mail_from, message_id=message.id, simulated=False)
    else:
        answered = "550 5.7.1, refused for good" if verdict == "refused" else "451 4.3.0, the sender retries"
        error = f"{outcome.error or f'HTTP {outcome.status}'} (synchronous delivery: answered {answered})"
        jobs = [job._replace(status="failed", attempts=1, finished_at=at, last_error=error[:2000])._asdict()
                ] if verdict == "refused" else []
        entry = deliveries.log_row(webhook_id=webhook.id, outcome=outcome._replace(error=error), status="failed",
                                   sender=message.mail_from, message_id=message.id, simulated=False)
    queue.accept(session, messages=(), jobs=jobs, logs=[entry])
    kept = keep_raw and verdict != "deferred"
    if not kept and not (verdict == "accepted" and queued):
        queue.drop_unneeded(session, [message.id])
    if outcome.status == GONE:
        deliveries.deactivate(session, webhook, reason=f"the endpoint answered {GONE} Gone", cause="gone")


async def _webhook(database: Database, webhook_id: str) -> WebhookRow | None:
    """The webhook as the worker's claim reads it (a read, outside any transaction)."""
    async with database.sessions() as db:
        row = (await db.execute(select(*Webhook.__table__.c).where(Webhook.id == webhook_id))).first()
    return None if row is None else WebhookRow._make(row)


async def _rate_allows(database: Database, webhook: WebhookRow, deadline: float) -> bool:
    """Take a delivery of the webhook's rate limit, waiting for it if it comes before ``deadline``."""
    while True:
        async with database.transaction() as db:
            wait = await rate_limit.take(db, webhook.id, webhook.rate_limit)
        if not wait:
            return True
        if wait > deadline - time.monotonic():
            return False
        await asyncio.sleep(wait)


async def _forget(ctx: SyncContext, message_id: str) -> None:
    """No attempt was made and the sender got no 250: the stored message is not needed."""
    await ctx.database.run(lambda session: ctx.database.queue.drop_unneeded(session, [message_id]))
