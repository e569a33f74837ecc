"""The message store as the Messages API sees it: an account's stored messages, their deliveries
and attempts, their erasure. One implementation for both databases (the statements are plain
SQLAlchemy Core), with SQLite's erasure overriding the base's (``SqliteMessageStore``).

A message has no owner column: an account sees a message while one of its jobs goes to one of
the account's webhooks (a job lives as long as its message, ``ON DELETE CASCADE``). A message
addressed to several accounts is seen by each, with only its own deliveries.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, String, and_, cast, delete, exists, func, not_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, defer

from conduit.storage import refusals
from conduit.storage.models import DeliveryJob, DeliveryLog, Message, Webhook

MessageStatus = Literal["delivered", "pending", "failed", "held"]
Condition = Callable[[Any, Any], ColumnElement[bool]]  # (job alias, webhook alias) -> condition
_LIKE_ESCAPE = "\\"


@dataclass(frozen=True)
class MessageFilters:
    """GET /messages's filters; None: not filtered on."""

    webhook_id: str | None = None
    recipient: str | None = None  # one of the recipients routed to the account's webhooks, any case
    sender: str | None = None  # the envelope sender, any case
    subject: str | None = None  # text the Subject contains, any case
    received_after: datetime | None = None
    received_before: datetime | None = None
    status: MessageStatus | None = None


@dataclass(frozen=True)
class Delivery:
    """A job of a message to one of the account's webhooks, with that webhook's address."""

    job_id: str
    message_id: str
    webhook_id: str
    webhook_address: str
    webhook_active: bool
    recipients: list[str]
    status: str  # the job's: queued | delivered | failed
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    finished_at: datetime | None
    last_error: str


@dataclass(frozen=True)
class StoredRefusal:
    """A message refused at SMTP time, as a refusals source keeps it (see ``list_refusals``)."""

    id: str
    received_at: datetime
    mail_from: str
    rcpt_to: list[str]
    subject: str
    webhook_id: str | None
    reason: str
    reply_code: int = 0
    reply_text: str = ""
    detail: str = ""


def _job_is(status: str) -> Condition:
    return lambda job, hook: job.status == status


def _webhook_active(active: bool) -> Condition:
    return lambda job, hook: hook.active.is_(active)


def _like(value: str) -> str:
    """``value`` as a LIKE pattern that matches it literally (with ESCAPE '\\')."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class MessageStore:
    """Messages by account. Every method works in the caller's transaction."""

    def _jobs_exist(self, account_id: str, filters: MessageFilters, *conditions: Condition,
                    current: bool = False) -> ColumnElement[bool]:
        """Whether the message of the enclosing query has a job of the account (through the
        filtered webhook, to the filtered recipient) meeting ``conditions``. ``current``: only a
        webhook's latest job counts (a redelivery's outcome replaces the one before)."""
        job, hook = aliased(DeliveryJob), aliased(Webhook)
        where: list[ColumnElement[bool]] = [job.webhook_id == hook.id, job.message_id == Message.id,
                                            hook.account_id == account_id]
        where += [condition(job, hook) for condition in conditions]
        if filters.webhook_id is not None:
            where.append(job.webhook_id == filters.webhook_id)
        if filters.recipient is not None:
            needle = _like(json.dumps(filters.recipient.strip().lower()))
            where.append(func.lower(cast(job.recipients, String)).like(f"%{needle}%", escape=_LIKE_ESCAPE))
        if current:
            newer = aliased(DeliveryJob)
            where.append(~exists().where(newer.message_id == job.message_id, newer.webhook_id == job.webhook_id,
                                         newer.id > job.id))
        return exists().where(*where)

    def _status(self, account_id: str, filters: MessageFilters, status: MessageStatus) -> ColumnElement[bool]:
        """A message's status for an account, from its webhooks' latest jobs: held (a queued job
        of a paused webhook) before pending (queued) before failed before delivered."""
        def some(*conditions: Condition) -> ColumnElement[bool]:
            return self._jobs_exist(account_id, filters, *conditions, current=True)

        queued = _job_is("queued")
        held = some(queued, _webhook_active(False))
        if status == "held":
            return held
        if status == "pending":
            return and_(some(queued, _webhook_active(True)), not_(held))
        if status == "failed":
            return and_(not_(some(queued)), some(_job_is("failed")))
        return and_(not_(some(queued)), not_(some(_job_is("failed"))), some(_job_is("delivered")))

    async def list_messages(self, session: AsyncSession, account_id: str, filters: MessageFilters, *,
                            before_id: str | None, limit: int) -> list[Message]:
        """The account's messages matching ``filters``, newest first (ids are time-ordered), from
        just after ``before_id``; their raw bytes are not read."""
        query = (select(Message).options(defer(Message.raw))
                 .where(self._jobs_exist(account_id, filters)).order_by(Message.id.desc()).limit(limit))
        if before_id is not None:
            query = query.where(Message.id < before_id)
        if filters.sender is not None:
            query = query.where(func.lower(Message.mail_from) == filters.sender.strip().lower())
        if filters.subject is not None:
            query = query.where(func.lower(Message.subject).like(f"%{_like(filters.subject.lower())}%",
                                                                 escape=_LIKE_ESCAPE))
        if filters.received_after is not None:
            query = query.where(Message.received_at > filters.received_after)
        if filters.received_before is not None:
            query = query.where(Message.received_at < filters.received_before)
        if filters.status is not None:
            query = query.where(self._status(account_id, filters, filters.status))
        return list(await session.scalars(query))

    async def get(self, session: AsyncSession, account_id: str, message_id: str, *, with_raw: bool,
                  keep: bool = False) -> Message | None:
        """The message, if the account sees it. ``keep``: the purge cannot drop it until the
        caller's transaction ends (on PostgreSQL a key-share lock; SQLite has one writer)."""
        return await _one(session, message_id, self._jobs_exist(account_id, MessageFilters()),
                          with_raw=with_raw, keep=keep)

    async def get_kept(self, session: AsyncSession, message_id: str, *, with_raw: bool = True,
                       keep: bool = False) -> Message | None:
        """The message whoever owns it, for callers that checked access another way: a signed
        link, or a delivery log of one of the account's webhooks (a recipient refused at DATA
        leaves a log and no job). ``keep``: as for ``get``."""
        return await _one(session, message_id, with_raw=with_raw, keep=keep)

    async def deliveries(self, session: AsyncSession, account_id: str, message_ids: Sequence[str]
                         ) -> list[Delivery]:
        """The jobs of these messages to the account's webhooks, oldest first."""
        if not message_ids:
            return []
        rows = await session.execute(
            select(DeliveryJob, Webhook.address, Webhook.active).join(Webhook, Webhook.id == DeliveryJob.webhook_id)
            .where(DeliveryJob.message_id.in_(list(message_ids)), Webhook.account_id == account_id)
            .order_by(DeliveryJob.id))
        return [Delivery(job_id=job.id, message_id=job.message_id, webhook_id=job.webhook_id,
                         webhook_address=address, webhook_active=active, recipients=list(job.recipients or []),
                         status=job.status, attempts=job.attempts, next_attempt_at=job.next_attempt_at,
                         created_at=job.created_at, finished_at=job.finished_at, last_error=job.last_error)
                for job, address, active in rows]

    async def attempts(self, session: AsyncSession, account_id: str, message_id: str) -> list[DeliveryLog]:
        """The delivery log entries of the message at the account's webhooks, oldest first."""
        rows = await session.scalars(
            select(DeliveryLog).join(Webhook, Webhook.id == DeliveryLog.webhook_id)
            .where(DeliveryLog.smtp_message_id == message_id, Webhook.account_id == account_id)
            .order_by(DeliveryLog.attempted_at, DeliveryLog.id))
        return list(rows)

    async def erase(self, session: AsyncSession, account_id: str, message_id: str) -> bool:
        """Drop the account's jobs of the message, and the message itself (its raw bytes) unless
        another account's job still needs it. False when the account does not see it."""
        own = select(Webhook.id).where(Webhook.account_id == account_id)
        result = await session.execute(
            delete(DeliveryJob).where(DeliveryJob.message_id == message_id, DeliveryJob.webhook_id.in_(own))
            .execution_options(synchronize_session=False))
        if not getattr(result, "rowcount", 0):
            return False
        others = await session.scalar(select(exists().where(DeliveryJob.message_id == message_id)))
        if not others:
            await self._delete_message(session, message_id)
        return True

    async def _delete_message(self, session: AsyncSession, message_id: str) -> None:
        await session.execute(delete(Message).where(Message.id == message_id)
                              .execution_options(synchronize_session=False))

    async def list_refusals(self, session: AsyncSession, account_id: str, filters: MessageFilters, *,
                            before_id: str | None, limit: int) -> list[StoredRefusal]:
        """Messages refused at SMTP time for the account, newest first: GET /messages?status=refused,
        read from the refusals store (one row per refused recipient; the body is never kept, so
        no Subject is known and a ``subject`` filter matches none). ``before_id`` is the last
        refusal of the previous page; once it is purged the list has nothing after it."""
        if filters.subject or filters.status is not None:
            return []
        cursor = None
        if before_id is not None:
            cursor = await refusals.cursor_after(session, account_id, before_id)
            if cursor is None:
                return []
        page = await refusals.list_refusals(
            session, account_id, cursor=cursor, limit=min(limit, refusals.MAX_LIMIT), recipient=filters.recipient,
            sender=filters.sender, after=filters.received_after, before=filters.received_before,
            webhook_id=filters.webhook_id)
        return [StoredRefusal(id=row.id, received_at=row.refused_at, mail_from=row.sender, rcpt_to=[row.recipient],
                              subject="", webhook_id=row.webhook_id, reason=row.reason, reply_code=row.reply_code,
                              reply_text=row.reply_text, detail=row.detail) for row in page.items]


class SqliteMessageStore(MessageStore):
    """SQLite keeps a deleted row's bytes in the file's free pages until they are reused:
    ``secure_delete`` zeroes them as the row goes, so an erased message leaves the file at the
    next checkpoint."""

    async def _delete_message(self, session: AsyncSession, message_id: str) -> None:
        await session.execute(text("PRAGMA secure_delete = ON"))
        try:
            await super()._delete_message(session, message_id)
        finally:
            await session.execute(text("PRAGMA secure_delete = OFF"))


async def _one(session: AsyncSession, message_id: str, *conditions: ColumnElement[bool], with_raw: bool,
               keep: bool) -> Message | None:
    """The message with this id that meets ``conditions``, its raw bytes read only if asked for,
    locked against the purge (``keep``)."""
    query = select(Message).where(Message.id == message_id, *conditions)
    if not with_raw:
        query = query.options(defer(Message.raw))
    if keep:
        query = query.with_for_update(key_share=True, of=Message)
    found: Message | None = await session.scalar(query)
    return found
