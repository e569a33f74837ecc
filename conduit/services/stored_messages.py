"""The Messages API's rules: an account's stored messages (CONDUIT_MESSAGE_RETENTION_DAYS), listed
newest first a page at a time, read (payload, raw bytes, one attachment), erased and queued again.

A message is the account's while one of its deliveries goes to one of the account's webhooks
(conduit/storage/message_store.py); any other id is a 404, whoever's message it is.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import is_id
from conduit.config import Settings
from conduit.errors import ConduitError, Gone, Invalid, NotFound, Throttled, Unavailable
from conduit.isolation import RendererBusy, RenderFailed, RenderPool, render_body
from conduit.mail.parse import PayloadLinks
from conduit.services import audit, message_links, webhooks
from conduit.storage.interfaces import JobQueue, MessageRow
from conduit.storage.message_store import Delivery, MessageFilters, MessageStatus, MessageStore, StoredRefusal
from conduit.storage.models import Account, DeliveryLog, Message

MAX_PAGE = 200
_CURSOR_ID = re.compile(r"[a-z]{2,8}_[0-9a-v]{26}")
STATUS_ORDER = ("held", "pending", "failed", "delivered")  # a message's status: the first its deliveries have


@dataclass(frozen=True)
class Summary:
    """One entry of GET /messages: a stored message (or a refusal, ``status`` refused)."""

    id: str
    received_at: datetime
    mail_from: str
    rcpt_to: list[str]
    subject: str
    size: int
    status: str
    webhook_ids: list[str]
    refusal_reason: str | None = None
    refusal_reply: str | None = None  # the SMTP reply the sender got, "550 5.7.1 Message refused as spam"
    refusal_detail: str | None = None


@dataclass(frozen=True)
class Page:
    items: list[Summary]
    next_cursor: str | None


@dataclass(frozen=True)
class WebhookDelivery:
    """The latest delivery of a message to one webhook, with every attempt the message had there."""

    current: Delivery
    state: str  # delivered | pending | failed | held
    attempts: list[DeliveryLog] = field(default_factory=list)


@dataclass(frozen=True)
class Detail:
    summary: Summary
    message: Message
    payload: dict[str, Any] | None
    payload_error: str | None
    deliveries: list[WebhookDelivery]


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Requeued:
    job_id: str
    webhook_id: str


# --- cursors -------------------------------------------------------------------------------------


def encode_cursor(last_id: str) -> str:
    """An opaque cursor: the last id of a page, base64url without padding."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        value = ""
    if not _CURSOR_ID.fullmatch(value):
        raise ConduitError("cursor is not one this API returned (take it from the Link header of the previous "
                           "page)", code="invalid_cursor")
    return value


# --- states --------------------------------------------------------------------------------------


def delivery_state(delivery: Delivery) -> str:
    """delivered, failed, or, while queued, pending (or held: its webhook is paused)."""
    if delivery.status == "queued":
        return "pending" if delivery.webhook_active else "held"
    return delivery.status


def latest_per_webhook(deliveries: Sequence[Delivery]) -> list[Delivery]:
    """Each webhook's latest job (a redelivery replaces the one before), in webhook order of
    first delivery."""
    latest: dict[str, Delivery] = {}
    for delivery in sorted(deliveries, key=lambda d: d.job_id):
        latest[delivery.webhook_id] = delivery
    return list(latest.values())


def message_status(deliveries: Sequence[Delivery]) -> str:
    states = {delivery_state(d) for d in latest_per_webhook(deliveries)}
    return next((s for s in STATUS_ORDER if s in states), "pending")


def _recipients(deliveries: Sequence[Delivery]) -> list[str]:
    """The recipients routed to the account's webhooks (never another account's)."""
    return list(dict.fromkeys(r for d in deliveries for r in d.recipients))


def _summary(message: Message, deliveries: Sequence[Delivery]) -> Summary:
    return Summary(id=message.id, received_at=message.received_at, mail_from=message.mail_from,
                   rcpt_to=_recipients(deliveries), subject=message.subject, size=message.size,
                   status=message_status(deliveries),
                   webhook_ids=list(dict.fromkeys(d.webhook_id for d in deliveries)))


def _refusal_summary(refusal: StoredRefusal) -> Summary:
    return Summary(id=refusal.id, received_at=refusal.received_at, mail_from=refusal.mail_from,
                   rcpt_to=list(refusal.rcpt_to), subject=refusal.subject, size=0, status="refused",
                   webhook_ids=[refusal.webhook_id] if refusal.webhook_id else [], refusal_reason=refusal.reason,
                   refusal_reply=" ".join(f"{refusal.reply_code} {refusal.reply_text}".split()),
                   refusal_detail=refusal.detail)


# --- reads ---------------------------------------------------------------------------------------


def _utc(moment: datetime | None, field: str) -> datetime | None:
    """In UTC; a time given without an offset is read as UTC."""
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is past the last datetime once in UTC
        raise Invalid(f"{field} is out of range", field=field) from None


async def list_messages(session: AsyncSession, store: MessageStore, account: Account, *, filters: MessageFilters,
                        status: str | None, cursor: str | None, limit: int) -> Page:
    """Newest first, ``limit`` at a time; ``status`` refused lists refusals instead of messages."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be 1 to {MAX_PAGE}", field="limit")
    before_id = decode_cursor(cursor) if cursor is not None else None
    filters = replace(filters, received_after=_utc(filters.received_after, "received_after"),
                      received_before=_utc(filters.received_before, "received_before"))
    if filters.webhook_id is not None:
        await webhooks.get(session, account, filters.webhook_id)  # 404 for another account's
    if status == "refused":
        refusals = await store.list_refusals(session, account.id, filters, before_id=before_id, limit=limit + 1)
        items = [_refusal_summary(r) for r in refusals]
    else:
        if status is not None:
            filters = replace(filters, status=cast(MessageStatus, status))  # the router's Literal
        rows = await store.list_messages(session, account.id, filters, before_id=before_id, limit=limit + 1)
        deliveries = await store.deliveries(session, account.id, [m.id for m in rows])
        by_message: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            by_message.setdefault(delivery.message_id, []).append(delivery)
        items = [_summary(m, by_message.get(m.id, [])) for m in rows]
    more = len(items) > limit
    items = items[:limit]
    return Page(items=items, next_cursor=encode_cursor(items[-1].id) if more else None)


async def _message(session: AsyncSession, store: MessageStore, account: Account, message_id: str, *,
                   with_raw: bool, keep: bool = False) -> Message:
    message = (await store.get(session, account.id, message_id, with_raw=with_raw, keep=keep)
               if is_id(message_id, "msg") else None)
    if message is None:
        raise NotFound("no stored message with this id: it never existed, was deleted, or its retention period ended",
                       code="message_not_found")
    return message


@dataclass(frozen=True)
class _Plain:
    """A webhook as the default payload sees it: no template."""

    id: str
    address: str
    account_id: str
    payload_template: str | None = None


async def _payload(renders: RenderPool, message: Message, delivery: Delivery, *, account_id: str,
                   max_inline_attachment_bytes: int, links: PayloadLinks | None = None) -> dict[str, Any]:
    """The default JSON payload of ``delivery``, parsed in a renderer process (the mail is untrusted)."""
    recipients = delivery.recipients or list(message.rcpt_to[:1])
    view = MessageRow(id=message.id, received_at=message.received_at, mail_from=message.mail_from,
                      rcpt_to=recipients, remote_ip=message.remote_ip, helo=message.helo, tls=message.tls,
                      auth_user=message.auth_user, size=message.size, auth_results=message.auth_results or {},
                      spam=message.spam, raw=message.raw, subject=message.subject)
    body, _ = await render_body(renders, view, _Plain(id=delivery.webhook_id, address=delivery.webhook_address,
                                                      account_id=account_id),
                                rcpt_to=recipients[0] if recipients else delivery.webhook_address, simulated=False,
                                max_inline_attachment_bytes=max_inline_attachment_bytes, links=links)
    payload: dict[str, Any] = json.loads(body)
    return payload


async def get_message(session: AsyncSession, store: MessageStore, account: Account, message_id: str, *,
                      renders: RenderPool, settings: Settings) -> Detail:
    """The message, its payload as its first webhook got it, and each webhook's delivery."""
    message = await _message(session, store, account, message_id, with_raw=True)
    deliveries = await store.deliveries(session, account.id, [message.id])
    attempts = await store.attempts(session, account.id, message.id)
    per_webhook = [WebhookDelivery(current=d, state=delivery_state(d),
                                   attempts=[a for a in attempts if a.webhook_id == d.webhook_id])
                   for d in latest_per_webhook(deliveries)]
    payload, payload_error = None, None
    if deliveries:
        try:
            payload = await _payload(renders, message, deliveries[0], account_id=account.id,
                                     max_inline_attachment_bytes=settings.max_inline_attachment_bytes,
                                     links=message_links.links_for(settings, message.id, message.received_at))
        except RenderFailed as exc:
            payload_error = str(exc)
    return Detail(summary=_summary(message, deliveries), message=message, payload=payload,
                  payload_error=payload_error, deliveries=per_webhook)


async def raw_message(session: AsyncSession, store: MessageStore, account: Account, message_id: str) -> bytes:
    """The message exactly as received."""
    return (await _message(session, store, account, message_id, with_raw=True)).raw


async def attachment(session: AsyncSession, store: MessageStore, account: Account, message_id: str, index: int, *,
                     renders: RenderPool, settings: Settings) -> Attachment:
    """The payload's ``attachments[index]``, decoded."""
    message = await _message(session, store, account, message_id, with_raw=True)
    deliveries = await store.deliveries(session, account.id, [message.id])
    return await _attachment(renders, message, deliveries[0], index, account_id=account.id, settings=settings)


async def _attachment(renders: RenderPool, message: Message, delivery: Delivery, index: int, *, account_id: str,
                      settings: Settings) -> Attachment:
    try:
        payload = await _payload(renders, message, delivery, account_id=account_id,
                                 max_inline_attachment_bytes=2 * max(settings.smtp_max_message_bytes, len(message.raw)))
    except RendererBusy as exc:
        raise Throttled(str(exc), retry_after=5) from None
    except RenderFailed as exc:
        raise Unavailable(f"the message could not be parsed: {exc}", code="message_unparsable") from None
    found = payload.get("attachments") or []
    if not 0 <= index < len(found):
        raise NotFound(f"the message has {len(found)} attachment(s); index {index} is not one of them",
                       code="attachment_not_found")
    part = found[index]
    if part.get("content") is None:
        raise Unavailable("the attachment could not be extracted within the renderer's memory limit",
                          code="attachment_unavailable")
    return Attachment(filename=part.get("filename"), content_type=part.get("content_type") or "",
                      data=base64.b64decode(part["content"]))


async def _linked(session: AsyncSession, store: MessageStore, message_id: str, *, expires: str, signature: str,
                  settings: Settings) -> Message:
    """The message a signed link names: 403 for a changed link, 410 once it expired or the
    message is gone."""
    message_links.check(settings, message_id, expires=expires, signature=signature)
    message = await store.get_kept(session, message_id) if is_id(message_id, "msg") else None
    if message is None:
        raise Gone("the message is no longer kept", code="message_gone")
    return message


async def raw_by_link(session: AsyncSession, store: MessageStore, message_id: str, *, expires: str, signature: str,
                      settings: Settings) -> bytes:
    """The raw message of a payload's ``raw_url``."""
    return (await _linked(session, store, message_id, expires=expires, signature=signature, settings=settings)).raw


async def attachment_by_link(session: AsyncSession, store: MessageStore, message_id: str, index: int, *, expires: str,
                             signature: str, renders: RenderPool, settings: Settings) -> Attachment:
    """An attachment of a payload's ``attachments[].url``."""
    message = await _linked(session, store, message_id, expires=expires, signature=signature, settings=settings)
    anyone = Delivery(job_id="", message_id=message.id, webhook_id="", webhook_address="", webhook_active=True,
                      recipients=list(message.rcpt_to[:1]), status="", attempts=0, next_attempt_at=message.received_at,
                      created_at=message.received_at, finished_at=None, last_error="")
    return await _attachment(renders, message, anyone, index, account_id="links", settings=settings)


# --- changes -------------------------------------------------------------------------------------


async def erase(session: AsyncSession, store: MessageStore, account: Account, message_id: str, *, ip: str) -> None:
    """Erase the message now: its deliveries to the account's webhooks (queued ones are
    cancelled) and its bytes (kept only while another account's delivery still needs them)."""
    if not is_id(message_id, "msg") or not await store.erase(session, account.id, message_id):
        raise NotFound("no stored message with this id", code="message_not_found")
    audit.record(session, account.id, "message.deleted", ip=ip, message_id=message_id)


async def redeliver(session: AsyncSession, store: MessageStore, queue: JobQueue, account: Account, message_id: str,
                    *, webhook_id: str | None, ip: str) -> list[Requeued]:
    """Queue the message again for one of the webhooks it went to, or for each of them, to the
    recipients it was routed to there."""
    message = await _message(session, store, account, message_id, with_raw=False, keep=True)  # not purged meanwhile
    latest = latest_per_webhook(await store.deliveries(session, account.id, [message.id]))
    if webhook_id is not None:
        latest = [d for d in latest if d.webhook_id == webhook_id]
        if not latest:
            raise NotFound("this message was not delivered to a webhook of yours with this id",
                           code="webhook_not_found")
    queued = []
    for delivery in latest:
        job_id = await session.run_sync(queue.enqueue, message_id=message.id, webhook_id=delivery.webhook_id,
                                        recipients=delivery.recipients or [delivery.webhook_address])
        queued.append(Requeued(job_id=job_id, webhook_id=delivery.webhook_id))
    audit.record(session, account.id, "message.redelivery_queued", ip=ip, message_id=message.id,
                 job_ids=[q.job_id for q in queued])
    return queued
