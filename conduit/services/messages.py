"""Accepting a message: the raw bytes and one delivery job per webhook, in one transaction.

The SMTP server answers 250 only after the caller's transaction around ``accept`` commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import new_id, now
from conduit.db.models import DeliveryLog, Message
from conduit.delivery import queue


@dataclass(frozen=True)
class Receipt:
    """The SMTP transaction's facts, as stored with the message."""

    mail_from: str
    rcpt_to: list[str]
    remote_ip: str
    helo: str
    tls: bool
    auth_user: str | None
    auth_results: dict[str, Any] = field(default_factory=dict)


async def accept(session: AsyncSession, receipt: Receipt, raw: bytes, targets: dict[str, str]) -> Message:
    """Store the message and queue it for each webhook; ``targets`` maps webhook id -> recipient.

    A dict, so several recipients reaching one webhook make one delivery.
    """
    message = Message(id=new_id("msg"), received_at=now(), mail_from=receipt.mail_from, rcpt_to=receipt.rcpt_to,
                      remote_ip=receipt.remote_ip, helo=receipt.helo, tls=receipt.tls, auth_user=receipt.auth_user,
                      size=len(raw), auth_results=receipt.auth_results, raw=raw)
    session.add(message)
    await session.flush()  # the jobs' foreign key needs the message row first
    queue.enqueue(session, message, targets.items())
    return message


def record_rejection(session: AsyncSession, *, webhook_id: str, sender: str, reason: str,
                     message_id: str = "") -> None:
    """A refusal at SMTP time shows in the webhook's delivery log (http_status 0)."""
    session.add(DeliveryLog(id=new_id("log"), webhook_id=webhook_id, status="rejected", attempted_at=now(),
                            http_status=0, duration_ms=0, error=reason[:2000], sender=sender[:320],
                            smtp_message_id=message_id, simulated=False))
