"""Webhooks: address routing rules, target validation (with the SSRF guard), CRUD, delivery logs."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import dns.asyncresolver
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import is_id, new_id
from conduit.crypto import Crypto
from conduit.errors import Conflict, Invalid, NotFound, Throttled
from conduit.isolation import RendererBusy, RenderPool, check_template
from conduit.net.targets import public_addresses
from conduit.services import audit, domains
from conduit.services.webhook_rules import (
    generate_webhook_secret,
    parse_webhook_address,
    validate_custom_headers,
    validate_secret,
    validate_target_url,
)
from conduit.storage.interfaces import JobQueue
from conduit.storage.message_store import MessageStore
from conduit.storage.models import Account, DeliveryLog, SmtpPolicy, Webhook

V = TypeVar("V")
R = TypeVar("R")

MAX_RATE_LIMIT = 1_000_000
DELIVERY_MODES = ("queued", "synchronous")
SYNC_TIMEOUT_MS = (1_000, 60_000)  # a synchronous delivery's bounds: the sender waits this long for its reply
DEFAULT_SYNC_TIMEOUT_MS = 10_000
MAX_LOG_OFFSET = 2**62  # OFFSET is a 64-bit integer in both databases: a page beyond it is simply empty


@dataclass(frozen=True)
class WebhookContext:
    """What validating a webhook needs besides the database."""

    crypto: Crypto
    resolver: dns.asyncresolver.Resolver
    allow_private_targets: bool
    public_domains: tuple[str, ...]
    renders: RenderPool  # templates are compiled there: compiling a hostile one takes time and memory


def _field(field: str, check: Callable[[V], R], value: V) -> R:
    try:
        return check(value)
    except ValueError as exc:
        raise Invalid(str(exc), field=field) from None


async def _apply(session: AsyncSession, account: Account, webhook: Webhook, changes: dict[str, Any],
                 ctx: WebhookContext) -> None:
    if "name" in changes and changes["name"] is not None:
        name = changes["name"].strip()
        if len(name) > 200:
            raise Invalid("name must be at most 200 characters", field="name")
        webhook.name = name
    if "address" in changes:
        await _set_address(session, account, webhook, changes["address"], ctx)
    if "target_url" in changes:
        url = _field("target_url", validate_target_url, changes["target_url"] or "")
        if not ctx.allow_private_targets:
            try:
                await public_addresses(url, ctx.resolver)
            except ValueError as exc:
                raise Invalid(str(exc), field="target_url", code="target_not_allowed") from None
        webhook.target_url = url
    if "secret" in changes and changes["secret"] is not None:
        webhook.secret_encrypted = ctx.crypto.encrypt(_field("secret", validate_secret, changes["secret"]))
    if "custom_headers" in changes:
        webhook.custom_headers = _field("custom_headers", validate_custom_headers, changes["custom_headers"] or {})
    if "payload_template" in changes:
        template = changes["payload_template"] or None
        if template is not None:
            await _check_template(ctx, account, template)
        webhook.payload_template = template
    if "rate_limit" in changes and changes["rate_limit"] is not None:
        if not 0 <= changes["rate_limit"] <= MAX_RATE_LIMIT:
            raise Invalid(f"rate_limit must be 0 (unlimited) to {MAX_RATE_LIMIT} deliveries per minute",
                          field="rate_limit")
        webhook.rate_limit = changes["rate_limit"]
    if "active" in changes and changes["active"] is not None:
        webhook.active = bool(changes["active"])
    if "delivery_mode" in changes and changes["delivery_mode"] is not None:
        if changes["delivery_mode"] not in DELIVERY_MODES:
            raise Invalid("delivery_mode must be queued or synchronous", field="delivery_mode")
        webhook.delivery_mode = changes["delivery_mode"]
    if "sync_timeout_ms" in changes and changes["sync_timeout_ms"] is not None:
        low, high = SYNC_TIMEOUT_MS
        if not low <= changes["sync_timeout_ms"] <= high:
            raise Invalid(f"sync_timeout_ms must be {low} to {high} milliseconds", field="sync_timeout_ms")
        webhook.sync_timeout_ms = changes["sync_timeout_ms"]
    if changes.get("clear_security_policy"):
        webhook.smtp_security_policy_id = None
    elif changes.get("smtp_security_policy_id"):
        policy_id = changes["smtp_security_policy_id"]
        policy = await session.get(SmtpPolicy, policy_id) if is_id(policy_id, "pol") else None
        if policy is None or policy.account_id != account.id:
            raise Invalid("smtp_security_policy_id does not name one of your SMTP security policies",
                          field="smtp_security_policy_id")
        webhook.smtp_security_policy_id = policy.id
    webhook.name = webhook.name or webhook.address  # no name (or an empty one): the address names it


async def _check_template(ctx: WebhookContext, account: Account, template: Any) -> None:
    try:
        await check_template(ctx.renders, template, key=account.id)
    except ValueError as exc:
        raise Invalid(str(exc), field="payload_template") from None
    except RendererBusy as exc:
        raise Throttled(str(exc), retry_after=math.ceil(ctx.renders.timeout)) from None


async def _set_address(session: AsyncSession, account: Account, webhook: Webhook, value: Any,
                       ctx: WebhookContext) -> None:
    parsed = _field("address", parse_webhook_address, value or "")
    await domains.ensure_public(session, ctx.public_domains)
    domain = await domains.usable_for_address(session, account, parsed.domain, public=ctx.public_domains)
    if domain is None:
        raise Invalid(f"address domain {parsed.domain} is neither a domain you have verified nor a public domain",
                      field="address", code="domain_not_verified")
    if parsed.is_catch_all and domain.is_public:
        raise Invalid(f"a catch-all address needs a domain you own; {parsed.domain} is public",
                      field="address", code="catch_all_not_allowed")
    webhook.address = parsed.address
    webhook.domain_id = domain.id


async def _save(session: AsyncSession, webhook: Webhook) -> None:
    address = webhook.address  # read before flushing: a failed flush expires the row
    taken_error = Conflict(f"address {address} is already registered", code="address_taken")
    with session.no_autoflush:
        taken = await session.scalar(select(Webhook.id).where(Webhook.address == address, Webhook.id != webhook.id))
    if taken:
        raise taken_error
    session.add(webhook)
    try:
        await session.flush()  # not in begin_nested(): it would flush these changes before its savepoint
    except IntegrityError:  # registered by a concurrent request since the check above
        raise taken_error from None


async def create(session: AsyncSession, account: Account, *, fields: dict[str, Any], ctx: WebhookContext,
                 ip: str) -> Webhook:
    for required in ("address", "target_url"):
        if not fields.get(required):
            raise Invalid(f"{required} is required", field=required)
    webhook = Webhook(id=new_id("whk"), account_id=account.id, name="", custom_headers={}, payload_template=None,
                      rate_limit=0, active=True, smtp_security_policy_id=None, delivery_mode="queued",
                      sync_timeout_ms=DEFAULT_SYNC_TIMEOUT_MS,
                      secret_encrypted=ctx.crypto.encrypt(generate_webhook_secret()))
    await _apply(session, account, webhook, fields, ctx)
    await _save(session, webhook)
    audit.record(session, account.id, "webhook.created", ip=ip, webhook_id=webhook.id, address=webhook.address)
    return webhook


async def update(session: AsyncSession, account: Account, webhook_id: str, *, changes: dict[str, Any],
                 ctx: WebhookContext, ip: str) -> Webhook:
    """Partial update: only the fields present change; clear_security_policy removes the policy."""
    webhook = await get(session, account, webhook_id)
    for required in ("address", "target_url"):
        if required in changes and not changes[required]:
            raise Invalid(f"{required} cannot be empty", field=required)
    await _apply(session, account, webhook, changes, ctx)
    await _save(session, webhook)
    audit.record(session, account.id, "webhook.updated", ip=ip, webhook_id=webhook.id, fields=sorted(changes))
    return webhook


async def get(session: AsyncSession, account: Account, webhook_id: str) -> Webhook:
    webhook = await session.get(Webhook, webhook_id) if is_id(webhook_id, "whk") else None
    if webhook is None or webhook.account_id != account.id:
        raise NotFound("no webhook with this id", code="webhook_not_found")
    return webhook


async def list_for(session: AsyncSession, account: Account) -> list[Webhook]:
    rows = await session.scalars(select(Webhook).where(Webhook.account_id == account.id)
                                 .order_by(Webhook.created_at, Webhook.id))
    return list(rows)


async def delete_webhook(session: AsyncSession, account: Account, webhook_id: str, *, ip: str) -> None:
    webhook = await get(session, account, webhook_id)
    await session.delete(webhook)
    audit.record(session, account.id, "webhook.deleted", ip=ip, webhook_id=webhook.id, address=webhook.address)


@dataclass(frozen=True)
class LogPage:
    """One page of a webhook's delivery log, and whether a page follows it."""

    items: list[DeliveryLog]
    has_next: bool


async def list_logs(session: AsyncSession, account: Account, webhook_id: str, *, page: int, page_size: int,
                    status: str | None = None) -> LogPage:
    webhook = await get(session, account, webhook_id)
    offset = (page - 1) * page_size
    if offset >= MAX_LOG_OFFSET:
        return LogPage(items=[], has_next=False)
    query = select(DeliveryLog).where(DeliveryLog.webhook_id == webhook.id)
    if status:
        query = query.where(DeliveryLog.status == status)
    rows = list(await session.scalars(query.order_by(DeliveryLog.attempted_at.desc(), DeliveryLog.id.desc())
                                      .offset(offset).limit(page_size + 1)))
    return LogPage(items=rows[:page_size], has_next=len(rows) > page_size and offset + page_size < MAX_LOG_OFFSET)


async def get_log(session: AsyncSession, account: Account, webhook_id: str, log_id: str) -> DeliveryLog:
    webhook = await get(session, account, webhook_id)
    log = await session.get(DeliveryLog, log_id) if is_id(log_id, "log") else None
    if log is None or log.webhook_id != webhook.id:
        raise NotFound("no delivery log with this id for this webhook", code="delivery_log_not_found")
    return log



@dataclass(frozen=True)
class Redelivery:
    job_id: str
    message_id: str


async def redeliver(session: AsyncSession, store: MessageStore, queue: JobQueue, account: Account, webhook_id: str,
                    log_id: str) -> Redelivery:
    """Queue the message of a delivery log again for this webhook, to the recipients it was
    routed to there (404 once the raw message is gone)."""
    log = await get_log(session, account, webhook_id, log_id)
    # Kept: the purge cannot drop the message between this read and the new job.
    message = await store.get_kept(session, log.smtp_message_id, with_raw=False, keep=True
                                   ) if log.smtp_message_id else None
    if message is None:
        raise NotFound("the message is no longer stored: it was deleted, or its retention period ended",
                       code="message_gone")
    webhook = await get(session, account, webhook_id)
    rcpt = next((r for r in message.rcpt_to if r.lower() == webhook.address), message.rcpt_to[0] if message.rcpt_to
                else webhook.address)
    recipients = await session.run_sync(queue.recipients_of, message_id=message.id, webhook_id=webhook.id)
    job_id = await session.run_sync(queue.enqueue, message_id=message.id, webhook_id=webhook.id,
                                    recipients=recipients or [rcpt])
    audit.record(session, account.id, "webhook.redelivery_queued", webhook_id=webhook.id,
                 message_id=message.id, job_id=job_id)
    return Redelivery(job_id=job_id, message_id=message.id)
