"""Accepting messages: the raw bytes and one delivery job per webhook, many messages in one
transaction (the SMTP server's group commit, conduit/smtp/commits.py).

The SMTP server answers 250 only after the caller's transaction around ``accept_batch`` commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from conduit.clock import new_id, now
from conduit.db import sqlite_hot
from conduit.db.models import DeliveryJob, DeliveryLog, Message
from conduit.delivery import notify, queue


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


@dataclass(frozen=True)
class Incoming:
    """One message to store: ``targets`` maps webhook id -> recipient (several recipients reaching
    one webhook make one delivery); ``rejected`` lists (webhook id, reason) refused at DATA."""

    receipt: Receipt
    raw: bytes
    targets: dict[str, str]
    rejected: list[tuple[str, str]] = field(default_factory=list)
    id: str = field(default_factory=lambda: new_id("msg"))


def accept_batch(session: Session, batch: Sequence[Incoming]) -> None:
    """Insert the messages, their jobs and their DATA-time rejections (bulk inserts; messages
    first, for the jobs' foreign keys), in the group commit's transaction."""
    at = now()
    jobs = [queue.new_job(item.id, webhook_id, rcpt, at) for item in batch for webhook_id, rcpt in item.targets.items()]
    rejections = [_rejection_row(webhook_id, item.receipt.mail_from, reason, item.id, at)
                  for item in batch for webhook_id, reason in item.rejected]
    sqlite_hot.insert_many(session, Message.__table__, [_message_row(item, at) for item in batch])
    sqlite_hot.insert_many(session, DeliveryJob.__table__, jobs)
    sqlite_hot.insert_many(session, DeliveryLog.__table__, rejections)
    if jobs:
        notify.announce(session)


def record_rejection(session: AsyncSession, *, webhook_id: str, sender: str, reason: str) -> None:
    """A refusal at SMTP time shows in the webhook's delivery log (http_status 0)."""
    session.add(DeliveryLog(**_rejection_row(webhook_id, sender, reason, "", now())))


def _message_row(item: Incoming, at: Any) -> dict[str, Any]:
    r = item.receipt
    return {"id": item.id, "received_at": at, "mail_from": r.mail_from, "rcpt_to": r.rcpt_to,
            "remote_ip": r.remote_ip, "helo": r.helo, "tls": r.tls, "auth_user": r.auth_user,
            "size": len(item.raw), "auth_results": r.auth_results, "raw": item.raw}


def _rejection_row(webhook_id: str, sender: str, reason: str, message_id: str, at: Any) -> dict[str, Any]:
    return {"id": new_id("log"), "webhook_id": webhook_id, "status": "rejected", "attempted_at": at,
            "http_status": 0, "duration_ms": 0, "error": reason[:2000], "sender": sender[:320],
            "smtp_message_id": message_id, "simulated": False, "response_excerpt": ""}
