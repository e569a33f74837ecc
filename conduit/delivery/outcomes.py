"""What an attempt leaves behind: one delivery log row, the job's next state, and, for dead
endpoints (410 Gone, or nothing but failures for CONDUIT_DEACTIVATE_AFTER_DAYS), a deactivated
webhook with an audit entry. All in the caller's transaction."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import new_id, now
from conduit.config import Settings
from conduit.db.models import DeliveryJob, DeliveryLog, Message, Webhook
from conduit.delivery import queue
from conduit.delivery.http import HttpOutcome
from conduit.delivery.retry import RetryDecision
from conduit.services import audit


def log_attempt(session: AsyncSession, *, webhook_id: str, outcome: HttpOutcome, status: str, sender: str,
                message_id: str, simulated: bool) -> DeliveryLog:
    entry = DeliveryLog(id=new_id("log"), webhook_id=webhook_id, status=status, attempted_at=now(),
                        http_status=outcome.status or 0, duration_ms=outcome.duration_ms,
                        error=(outcome.error or "")[:2000], sender=sender[:320], smtp_message_id=message_id,
                        simulated=simulated, response_excerpt=outcome.response_excerpt[:4000])
    session.add(entry)
    return entry


async def record_attempt(session: AsyncSession, *, job: DeliveryJob, message: Message, webhook: Webhook,
                         outcome: HttpOutcome, decision: RetryDecision, settings: Settings) -> None:
    delivered = outcome.status is not None and 200 <= outcome.status < 300
    status = "delivered" if delivered else ("failed" if decision.give_up else "retrying")
    log_attempt(session, webhook_id=webhook.id, outcome=outcome, status=status, sender=message.mail_from,
                message_id=message.id, simulated=False)
    keep_raw = settings.keep_raw_days > 0
    if delivered:
        await queue.finish(session, job, status="delivered", keep_raw=keep_raw)
        return
    error = outcome.error or f"HTTP {outcome.status}"
    if decision.give_up:
        await queue.finish(session, job, status="failed", error=error, keep_raw=keep_raw)
    else:
        await queue.retry_later(session, job, delay=decision.retry_in or 0, error=error)
    if decision.deactivate:
        await deactivate(session, webhook, reason=f"the endpoint answered {outcome.status} Gone")
    elif await _failing_for(session, webhook.id) >= timedelta(days=settings.deactivate_after_days):
        await deactivate(session, webhook, reason=f"every delivery failed for {settings.deactivate_after_days} days")


async def _failing_for(session: AsyncSession, webhook_id: str) -> timedelta:
    """How long this webhook has had nothing but failed attempts (zero if it never failed)."""
    last_success = await session.scalar(select(func.max(DeliveryLog.attempted_at)).where(
        DeliveryLog.webhook_id == webhook_id, DeliveryLog.status == "delivered", DeliveryLog.simulated.is_(False)))
    query = select(func.min(DeliveryLog.attempted_at)).where(
        DeliveryLog.webhook_id == webhook_id, DeliveryLog.status.in_(("retrying", "failed")),
        DeliveryLog.simulated.is_(False))
    if last_success is not None:
        query = query.where(DeliveryLog.attempted_at > last_success)
    first_failure = await session.scalar(query)
    return now() - first_failure if first_failure else timedelta(0)


async def deactivate(session: AsyncSession, webhook: Webhook, *, reason: str) -> None:
    result = await session.execute(update(Webhook).where(Webhook.id == webhook.id, Webhook.active.is_(True))
                                   .values(active=False, updated_at=now()))
    if result.rowcount:
        await audit.record(session, webhook.account_id, "webhook.deactivated", webhook_id=webhook.id,
                           address=webhook.address, reason=reason)
