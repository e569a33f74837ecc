"""Accepting messages: the raw bytes and one delivery job per webhook, many messages in one
transaction (the SMTP server's group commit, conduit/smtp/commits.py).

The SMTP server answers 250 only after the caller's transaction around ``accept_batch`` commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from conduit.clock import new_id, now
from conduit.storage.interfaces import JobQueue, MessageRow, new_job
from conduit.storage.models import DeliveryLog


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
    spam: dict[str, Any] | None = None  # rspamd's verdict (the payload's "spam"); None: not checked
    subject: str = ""  # the decoded Subject header (conduit.mail.subject), for the Messages API's filter


@dataclass(frozen=True)
class Incoming:
    """One message to store: ``targets`` maps webhook id -> the recipients routed to it (several
    recipients reaching one webhook make one delivery, whose envelope lists them, and only them);
    ``rejected`` lists (webhook id, reason) refused at DATA. ``received_at``: when it is stored
    (None: the commit's time; a synchronous delivery sets it, to render the payload itself)."""

    receipt: Receipt
    raw: bytes
    targets: dict[str, list[str]]
    rejected: list[tuple[str, str]] = field(default_factory=list)
    id: str = field(default_factory=lambda: new_id("msg"))
    received_at: datetime | None = None


def accept_batch(queue: JobQueue, session: Session, batch: Sequence[Incoming]) -> None:
    """Store the messages, their jobs and their DATA-time rejections, in the group commit's
    transaction."""
    at = now()
    jobs = [new_job(item.id, webhook_id, recipients, at)
            for item in batch for webhook_id, recipients in item.targets.items()]
    rejections = [_rejection_row(webhook_id, item.receipt.mail_from, reason, item.id, at)
                  for item in batch for webhook_id, reason in item.rejected]
    queue.accept(session, messages=[_message_row(item, item.received_at or at) for item in batch], jobs=jobs,
                 logs=rejections)


def stored_row(item: Incoming) -> MessageRow:
    """The message as ``accept_batch`` stores it (and a worker's claim reads it back); ``item``
    has its ``received_at``."""
    assert item.received_at is not None, "the time it is stored with is known"
    row = _message_row(item, item.received_at)
    return MessageRow(**{name: row[name] for name in MessageRow._fields})


def record_rejection(session: AsyncSession, *, webhook_id: str, sender: str, reason: str) -> None:
    """A refusal at SMTP time shows in the webhook's delivery log (http_status 0)."""
    session.add(DeliveryLog(**_rejection_row(webhook_id, sender, reason, "", now())))


def _message_row(item: Incoming, at: Any) -> dict[str, Any]:
    r = item.receipt
    return {"id": item.id, "received_at": at, "mail_from": r.mail_from, "rcpt_to": r.rcpt_to,
            "remote_ip": r.remote_ip, "helo": r.helo, "tls": r.tls, "auth_user": r.auth_user,
            "size": len(item.raw), "auth_results": r.auth_results, "spam": r.spam, "raw": item.raw,
            "subject": r.subject}


def _rejection_row(webhook_id: str, sender: str, reason: str, message_id: str, at: Any) -> dict[str, Any]:
    return {"id": new_id("log"), "webhook_id": webhook_id, "status": "rejected", "attempted_at": at,
            "http_status": 0, "duration_ms": 0, "error": reason[:2000], "sender": sender[:320],
            "smtp_message_id": message_id, "simulated": False, "response_excerpt": ""}
