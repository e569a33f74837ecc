"""What the rest of Conduit sees of the delivery queue: one protocol, one implementation per
database (conduit/storage/queue_sqlite.py, queue_postgres.py), chosen once by ``open_database``.

Jobs are rows, taken with a lease: a worker that dies mid-delivery lets its lease expire and the
job is taken again (at-least-once); a worker whose attempt outlives the lease renews it. Every
method works in the caller's transaction (a synchronous ``Session``: the worker's and the SMTP
server's group commits run them through ``Database.run``; async code uses ``run_sync``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from sqlalchemy.orm import Session

from conduit.clock import new_id

# A message younger than this is never purged: during a synchronous delivery (at most a minute)
# it is stored without jobs, which are written with the receiver's answer.
PURGE_GRACE = timedelta(minutes=10)

# A claimed job comes with its message and its webhook, as tuples with the models' columns, in
# the models' order (tests/integration/test_queue_rows.py compares them): the ORM's identity map
# and instance loading cost more than a delivery needs.


class JobRow(NamedTuple):
    """conduit.storage.models.DeliveryJob's columns."""

    id: str
    message_id: str
    webhook_id: str
    rcpt_to: str
    recipients: list[str]
    status: str
    attempts: int
    next_attempt_at: datetime
    locked_until: datetime | None
    created_at: datetime
    finished_at: datetime | None
    last_error: str


class MessageRow(NamedTuple):
    """conduit.storage.models.Message's columns."""

    id: str
    received_at: datetime
    mail_from: str
    rcpt_to: list[str]
    remote_ip: str
    helo: str
    tls: bool
    auth_user: str | None
    size: int
    auth_results: dict[str, Any]
    spam: dict[str, Any] | None
    raw: bytes
    subject: str


class WebhookRow(NamedTuple):
    """conduit.storage.models.Webhook's columns."""

    id: str
    account_id: str
    domain_id: str
    name: str
    address: str
    target_url: str
    secret_encrypted: str
    custom_headers: dict[str, str]
    payload_template: str | None
    rate_limit: int
    active: bool
    smtp_security_policy_id: str | None
    delivery_mode: str
    sync_timeout_ms: int
    created_at: datetime
    updated_at: datetime


Claimed = tuple[JobRow, MessageRow, WebhookRow]


class Leased(Protocol):
    """A job as claimed: its id and the lease it holds."""

    @property
    def id(self) -> str: ...
    @property
    def message_id(self) -> str: ...
    @property
    def locked_until(self) -> datetime | None: ...


def new_job(message_id: str, webhook_id: str, recipients: Sequence[str], at: datetime) -> dict[str, Any]:
    """A queued job's column values, all of them. ``recipients``: the message's recipients routed
    to this webhook (the payload's envelope lists these, and only these)."""
    return {"id": new_id("job"), "message_id": message_id, "webhook_id": webhook_id, "rcpt_to": recipients[0],
            "recipients": list(recipients), "status": "queued", "attempts": 0, "next_attempt_at": at,
            "locked_until": None, "created_at": at, "finished_at": None, "last_error": ""}


class JobQueue(Protocol):
    """The delivery queue."""

    def accept(self, session: Session, *, messages: Sequence[dict[str, Any]], jobs: Sequence[dict[str, Any]],
               logs: Sequence[dict[str, Any]] = ()) -> None:
        """Store messages, their jobs (``new_job``) and delivery log rows, in bulk; wake the workers
        once the transaction commits. Rows give every column a value."""

    def claim(self, session: Session, *, limit: int, lease: timedelta, per_webhook: int) -> list[Claimed]:
        """Take up to ``limit`` due jobs, at most ``per_webhook`` under a live lease per webhook,
        rotating between webhooks: lease them and count the attempt. A job whose message or
        webhook was deleted in that instant is left out (its row goes with them)."""

    def next_due_at(self, session: Session) -> datetime | None:
        """When the earliest queued job no worker holds becomes due (for the worker's sleep); a
        time past means due jobs are waiting for a webhook's slot."""

    def renew(self, session: Session, jobs: Sequence[Leased], *, lease: timedelta) -> dict[str, datetime]:
        """Extend the leases still held; the new ``locked_until`` by job id (a job missing was
        taken over after its lease ran out)."""

    def still_held(self, session: Session, jobs: Sequence[Leased]) -> set[str]:
        """The ids of ``jobs`` still under the lease they hold, locked until the caller commits.
        A job missing here was taken over by another worker: that worker records it, not this one."""

    def finish_held(self, session: Session, jobs: Sequence[Leased], *, status: str, keep_raw: bool) -> set[str]:
        """``still_held`` and finishing in one step: mark the jobs still under their lease
        ``status``, drop each raw message no queued job needs any more (unless ``keep_raw``),
        return the ids finished."""

    def fail(self, session: Session, job: Leased, *, error: str, keep_raw: bool) -> None:
        """Give up on a job (its attempts are spent); drop its raw message once no job needs it."""

    def reschedule(self, session: Session, job: Leased, *, delay: float, error: str,
                   count_attempt: bool = True) -> None:
        """Put the job back for another try after ``delay`` seconds. ``count_attempt=False``
        holds it without spending an attempt (rate limited, webhook paused)."""

    def enqueue(self, session: Session, *, message_id: str, webhook_id: str, recipients: Sequence[str]) -> str:
        """Queue a stored message (again) for a webhook; returns the new job's id."""

    def drop_unneeded(self, session: Session, message_ids: Sequence[str]) -> None:
        """Drop these raw messages unless a queued job still needs them (a synchronous delivery
        that was refused or deferred leaves its message to nobody)."""

    def recipients_of(self, session: Session, *, message_id: str, webhook_id: str) -> list[str] | None:
        """The recipients the message was routed to at this webhook, if a job of it is still stored."""

    def log(self, session: Session, rows: Sequence[dict[str, Any]]) -> None:
        """Insert delivery log rows (all naming the same columns)."""

    def purge(self, session: Session, *, keep_days: int, limit: int) -> int:
        """Drop up to ``limit`` messages received more than ``keep_days`` ago (and at least
        ``PURGE_GRACE`` ago: a synchronous delivery writes its message's jobs only once the
        receiver has answered) that no queued job needs, oldest first; return how many."""
