"""What an attempt leaves behind: one delivery log row, the job's next state, and, for dead
endpoints (410 Gone, or nothing but failures for CONDUIT_DEACTIVATE_AFTER_DAYS), a deactivated
webhook with an audit entry. All in the caller's transaction, synchronous: the worker's group
commit runs them through ``Database.run``."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from conduit.clock import new_id, now
from conduit.config import Settings
from conduit.crypto import Crypto
from conduit.isolation import RenderPool, render_body
from conduit.net.dns import make_resolver
from conduit.net.http_aiohttp import AiohttpTransport
from conduit.net.http_client import WebhookClient
from conduit.net.http_transport import EXCERPT_BYTES, HttpOutcome, WebhookTransport
from conduit.net.signing import sign_headers
from conduit.observability import metrics
from conduit.services import audit, message_links
from conduit.services.retry import RetryDecision
from conduit.storage.interfaces import JobQueue, JobRow, MessageRow, WebhookRow
from conduit.storage.models import DeliveryLog, Webhook

log = logging.getLogger("conduit.worker")


def webhook_client(settings: Settings) -> WebhookTransport:
    """The transport as configured: CONDUIT_HTTP_CLIENT (Conduit's own client or aiohttp),
    CONDUIT_HTTP_PROXY, CONDUIT_DNS_SERVERS, CONDUIT_ALLOW_PRIVATE_TARGETS, the timeouts."""
    transport = AiohttpTransport if settings.http_client == "aiohttp" else WebhookClient
    return transport(resolver=make_resolver(settings.dns_server_list, settings.dns_timeout),
                     allow_private=settings.allow_private_targets, connect_timeout=settings.delivery_connect_timeout,
                     total_timeout=settings.delivery_timeout, proxy=settings.http_proxy or None)


def signed_headers(webhook: Webhook | WebhookRow, crypto: Crypto, *, msg_id: str, body: bytes,
                   content_type: str) -> dict[str, str]:
    """Content-Type, the webhook's custom headers, and the Standard Webhooks signature headers.

    ``msg_id`` is the job id: stable across retries, so receivers can deduplicate.
    """
    headers = {"Content-Type": content_type, **webhook.custom_headers}
    headers.update(sign_headers(_secret(crypto, webhook.secret_encrypted), msg_id=msg_id,
                                timestamp=int(time.time()), body=body))
    return headers


async def attempt(job: JobRow, message: MessageRow, webhook: WebhookRow, *, renders: RenderPool, crypto: Crypto,
                  client: WebhookTransport, settings: Settings, render_deadline: float,
                  post_deadline: float | None = None) -> HttpOutcome:
    """One delivery attempt: render (in a renderer process, by ``render_deadline``), sign and POST
    (by ``post_deadline``, else within the transport's timeout), both ``time.monotonic()``. The
    worker's and the SMTP server's synchronous deliveries both make theirs here, so a receiver
    cannot tell them apart. The payload's envelope lists the job's recipients only: those routed
    to this webhook, not the message's others (which may be other accounts')."""
    started = time.monotonic()
    try:
        body, content_type = await render_body(
            renders, message._replace(rcpt_to=job.recipients or [job.rcpt_to]), webhook,
            rcpt_to=job.rcpt_to, simulated=False, max_inline_attachment_bytes=settings.max_inline_attachment_bytes,
            deadline=render_deadline, links=message_links.links_for(settings, message.id, message.received_at))
    except Exception as exc:  # noqa: BLE001 - a broken template or message fails this attempt, not its caller
        return HttpOutcome(status=None, duration_ms=int((time.monotonic() - started) * 1000),
                           error=f"payload could not be rendered: {exc}", response_excerpt="", retry_after=None)
    headers = signed_headers(webhook, crypto, msg_id=job.id, body=body, content_type=content_type)
    if post_deadline is None:
        return await client.post(webhook.target_url, body, headers)
    return await client.post(webhook.target_url, body, headers, timeout=max(0.001, post_deadline - time.monotonic()))


@functools.lru_cache(maxsize=1024)
def _secret(crypto: Crypto, secret_encrypted: str) -> str:
    """The webhook's signing secret, decrypted once per ciphertext (Fernet's check and decryption
    cost more than signing). A rotated secret is a new ciphertext."""
    return crypto.decrypt(secret_encrypted)


@dataclass(frozen=True)
class Attempt:
    """One finished delivery attempt, waiting to be recorded."""

    job: JobRow  # as the worker claims them
    message: MessageRow
    webhook: WebhookRow
    outcome: HttpOutcome
    decision: RetryDecision

    @property
    def delivered(self) -> bool:
        return self.outcome.status is not None and 200 <= self.outcome.status < 300


def log_row(*, webhook_id: str, outcome: HttpOutcome, status: str, sender: str, message_id: str,
            simulated: bool) -> dict[str, Any]:
    """The attempt's delivery log row: the receiver's status, the headers that explain a failure
    (Retry-After, Content-Type), the first KiB of its body, and an ``error`` that is never empty
    when the attempt failed."""
    return {"id": new_id("log"), "webhook_id": webhook_id, "status": status, "attempted_at": now(),
            "http_status": outcome.status or 0, "duration_ms": outcome.duration_ms,
            "error": failure_sentence(outcome)[:2000], "sender": sender[:320], "smtp_message_id": message_id,
            "simulated": simulated, "response_excerpt": outcome.response_excerpt[:EXCERPT_BYTES],
            "response_retry_after": _header(outcome.retry_after),
            "response_content_type": _header(outcome.content_type)}


def failure_sentence(outcome: HttpOutcome) -> str:
    """``outcome.error``; for a non-2xx response without one, its status: never empty for a failure."""
    if outcome.error:
        return outcome.error
    if outcome.status is None:
        return "no response from the receiver"
    if not 200 <= outcome.status < 300:
        return f"HTTP {outcome.status}"
    return ""


def _header(value: str | None) -> str | None:
    return value[:200] if value is not None else None


def log_attempt(session: AsyncSession, *, webhook_id: str, outcome: HttpOutcome, status: str, sender: str,
                message_id: str, simulated: bool) -> DeliveryLog:
    entry = DeliveryLog(**log_row(webhook_id=webhook_id, outcome=outcome, status=status, sender=sender,
                                  message_id=message_id, simulated=simulated))
    session.add(entry)
    return entry


def record_attempts(queue: JobQueue, session: Session, attempts: Sequence[Attempt], *, settings: Settings) -> None:
    """Record a group of attempts (the worker's group commit). Successes, nearly all of them
    under load, are written with a few statements for the whole group; failures one by one.
    Only attempts whose job is still under the lease they hold are recorded (the queue's
    ``finish_held``, ``still_held``)."""
    latest = _latest_claims(attempts)
    delivered = [a for a in latest if a.delivered]
    failed = [a for a in latest if not a.delivered]
    held = queue.finish_held(session, [a.job for a in delivered], status="delivered",
                             keep_raw=settings.message_retention_days > 0)
    held |= queue.still_held(session, [a.job for a in failed])
    recorded = {id(a) for a in latest if a.job.id in held}
    for attempt in attempts:
        if id(attempt) not in recorded:
            log.warning("event=lease_lost job=%s status=%s", attempt.job.id, attempt.outcome.status)
    if delivered := [a for a in delivered if id(a) in recorded]:
        queue.log(session, [
            log_row(webhook_id=a.webhook.id, outcome=a.outcome, status="delivered", sender=a.message.mail_from,
                    message_id=a.message.id, simulated=False) for a in delivered])
    for attempt in failed:
        if id(attempt) in recorded:
            _record_failure(queue, session, attempt, settings=settings)


def _latest_claims(attempts: Sequence[Attempt]) -> list[Attempt]:
    """One attempt per job: a job taken again after its lease ran out, while the first attempt
    waited to be recorded, can be here twice, and only the later claim (the later lease) can
    still hold it."""
    latest: dict[str, Attempt] = {}
    for attempt in attempts:
        kept = latest.get(attempt.job.id)
        if kept is None or _lease_end(attempt) > _lease_end(kept):
            latest[attempt.job.id] = attempt
    return list(latest.values())


def _lease_end(attempt: Attempt) -> datetime:
    return attempt.job.locked_until or datetime.min.replace(tzinfo=UTC)


def _record_failure(queue: JobQueue, session: Session, attempt: Attempt, *, settings: Settings) -> None:
    job, webhook, outcome, decision = attempt.job, attempt.webhook, attempt.outcome, attempt.decision
    status = "failed" if decision.give_up else "retrying"
    queue.log(session, [log_row(
        webhook_id=webhook.id, outcome=outcome, status=status, sender=attempt.message.mail_from,
        message_id=attempt.message.id, simulated=False)])
    error = outcome.error or f"HTTP {outcome.status}"
    if decision.give_up:
        queue.fail(session, job, error=error, keep_raw=settings.message_retention_days > 0)
    else:
        queue.reschedule(session, job, delay=decision.retry_in or 0, error=error)
    if decision.deactivate:
        deactivate(session, webhook, reason=f"the endpoint answered {outcome.status} Gone", cause="gone")
    elif _failing_for(session, webhook.id) >= timedelta(days=settings.deactivate_after_days):
        deactivate(session, webhook, reason=f"every delivery failed for {settings.deactivate_after_days} days",
                   cause="failing")


def _failing_for(session: Session, webhook_id: str) -> timedelta:
    """How long this webhook has had nothing but failed attempts (zero if it never failed)."""
    last_success = session.scalar(select(func.max(DeliveryLog.attempted_at)).where(
        DeliveryLog.webhook_id == webhook_id, DeliveryLog.status == "delivered", DeliveryLog.simulated.is_(False)))
    query = select(func.min(DeliveryLog.attempted_at)).where(
        DeliveryLog.webhook_id == webhook_id, DeliveryLog.status.in_(("retrying", "failed")),
        DeliveryLog.simulated.is_(False))
    if last_success is not None:
        query = query.where(DeliveryLog.attempted_at > last_success)
    first_failure = session.scalar(query)
    return now() - first_failure if first_failure else timedelta(0)


def deactivate(session: Session, webhook: Webhook | WebhookRow, *, reason: str, cause: str) -> None:
    """Switch the webhook off; ``cause`` (gone, failing) labels the metric."""
    result = cast(CursorResult[Any], session.execute(
        update(Webhook).where(Webhook.id == webhook.id, Webhook.active.is_(True))
        .values(active=False, updated_at=now())))
    if result.rowcount:
        audit.record(session, webhook.account_id, "webhook.deactivated", webhook_id=webhook.id,
                     address=webhook.address, reason=reason)
        metrics.webhook_deactivated(cause)
