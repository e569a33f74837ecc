"""What an attempt leaves behind: one delivery log row, the job's next state, and, for dead
endpoints (410 Gone, or nothing but failures for CONDUIT_DEACTIVATE_AFTER_DAYS), a deactivated
webhook with an audit entry. All in the caller's transaction, synchronous: the worker's group
commit runs them through ``run_transaction``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from conduit.clock import new_id, now
from conduit.config import Settings
from conduit.db import sqlite_hot
from conduit.db.models import DeliveryJob, DeliveryLog, Message, Webhook
from conduit.delivery import queue
from conduit.delivery.http import HttpOutcome
from conduit.delivery.retry import RetryDecision
from conduit.services import audit

log = logging.getLogger("conduit.worker")


@dataclass(frozen=True)
class Attempt:
    """One finished delivery attempt, waiting to be recorded."""

    job: DeliveryJob | Row  # rows with the models' columns, as the worker claims them
    message: Message | Row
    webhook: Webhook | Row
    outcome: HttpOutcome
    decision: RetryDecision

    @property
    def delivered(self) -> bool:
        return self.outcome.status is not None and 200 <= self.outcome.status < 300


def log_row(*, webhook_id: str, outcome: HttpOutcome, status: str, sender: str, message_id: str,
            simulated: bool) -> dict[str, Any]:
    return {"id": new_id("log"), "webhook_id": webhook_id, "status": status, "attempted_at": now(),
            "http_status": outcome.status or 0, "duration_ms": outcome.duration_ms,
            "error": (outcome.error or "")[:2000], "sender": sender[:320], "smtp_message_id": message_id,
            "simulated": simulated, "response_excerpt": outcome.response_excerpt[:4000]}


def log_attempt(session: AsyncSession, *, webhook_id: str, outcome: HttpOutcome, status: str, sender: str,
                message_id: str, simulated: bool) -> DeliveryLog:
    entry = DeliveryLog(**log_row(webhook_id=webhook_id, outcome=outcome, status=status, sender=sender,
                                  message_id=message_id, simulated=simulated))
    session.add(entry)
    return entry


def record_attempts(session: Session, attempts: Sequence[Attempt], *, settings: Settings) -> None:
    """Record a group of attempts (the worker's group commit). Successes, nearly all of them
    under load, are written with a few statements for the whole group; failures one by one.
    Only attempts whose job is still under the lease they were claimed with are recorded
    (conduit/delivery/queue.py: ``finish_held``, ``still_held``)."""
    latest = _latest_claims(attempts)
    delivered = [a for a in latest if a.delivered]
    failed = [a for a in latest if not a.delivered]
    held = queue.finish_held(session, [a.job for a in delivered], status="delivered",
                             keep_raw=settings.keep_raw_days > 0)
    held |= queue.still_held(session, [a.job for a in failed])
    recorded = {id(a) for a in latest if a.job.id in held}
    for attempt in attempts:
        if id(attempt) not in recorded:
            log.warning("event=lease_lost job=%s status=%s", attempt.job.id, attempt.outcome.status)
    if delivered := [a for a in delivered if id(a) in recorded]:
        sqlite_hot.insert_many(session, DeliveryLog.__table__, [
            log_row(webhook_id=a.webhook.id, outcome=a.outcome, status="delivered", sender=a.message.mail_from,
                    message_id=a.message.id, simulated=False) for a in delivered])
    for attempt in failed:
        if id(attempt) in recorded:
            _record_failure(session, attempt, settings=settings)


def _latest_claims(attempts: Sequence[Attempt]) -> list[Attempt]:
    """One attempt per job: a job taken again after its lease ran out, while the first attempt
    waited to be recorded, can be here twice, and only the later claim (the later lease) can
    still hold it."""
    latest: dict[str, Attempt] = {}
    for attempt in attempts:
        kept = latest.get(attempt.job.id)
        if kept is None or attempt.job.locked_until > kept.job.locked_until:
            latest[attempt.job.id] = attempt
    return list(latest.values())


def _record_failure(session: Session, attempt: Attempt, *, settings: Settings) -> None:
    job, webhook, outcome, decision = attempt.job, attempt.webhook, attempt.outcome, attempt.decision
    status = "failed" if decision.give_up else "retrying"
    sqlite_hot.insert_many(session, DeliveryLog.__table__, [log_row(
        webhook_id=webhook.id, outcome=outcome, status=status, sender=attempt.message.mail_from,
        message_id=attempt.message.id, simulated=False)])
    error = outcome.error or f"HTTP {outcome.status}"
    if decision.give_up:
        queue.finish_many(session, [job], status="failed", error=error, keep_raw=settings.keep_raw_days > 0)
    else:
        queue.retry_later(session, job, delay=decision.retry_in or 0, error=error)
    if decision.deactivate:
        deactivate(session, webhook, reason=f"the endpoint answered {outcome.status} Gone")
    elif _failing_for(session, webhook.id) >= timedelta(days=settings.deactivate_after_days):
        deactivate(session, webhook, reason=f"every delivery failed for {settings.deactivate_after_days} days")


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


def deactivate(session: Session, webhook: Webhook | Row, *, reason: str) -> None:
    result = session.execute(update(Webhook).where(Webhook.id == webhook.id, Webhook.active.is_(True))
                             .values(active=False, updated_at=now()))
    if result.rowcount:
        audit.record(session, webhook.account_id, "webhook.deactivated", webhook_id=webhook.id,
                     address=webhook.address, reason=reason)
