"""Simulate and preview: a synthetic message rendered exactly like a real delivery.

Simulate renders, signs and POSTs it synchronously, with a delivery log marked simulated; it
does not use the queue, so it does not count against the webhook's rate limit. Preview only
renders it, with a template of the caller's choosing, and sends nothing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import new_id, now
from conduit.config import Settings
from conduit.crypto import Crypto
from conduit.errors import Invalid, Throttled
from conduit.isolation import RendererBusy, RenderFailed, RenderPool, render_body
from conduit.mail.synthetic import build_synthetic_message
from conduit.net.http_transport import HttpOutcome, WebhookTransport
from conduit.services import webhooks
from conduit.services.deliveries import log_attempt, signed_headers
from conduit.storage.models import Account, Message

DEFAULT_SENDER = "simulator@conduit.invalid"
PREVIEW_ADDRESS = "test@example.com"


def _synthetic(address: str, *, sender: str | None, subject: str | None, text: str | None) -> tuple[Message, str]:
    """A message to ``address`` (a catch-all's ``*`` becomes ``test``) as if just received."""
    rcpt = address.replace("*@", "test@", 1)
    try:
        raw = build_synthetic_message(from_addr=sender, to_addr=rcpt, subject=subject, text=text)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    message = Message(id=new_id("msg"), received_at=now(), mail_from=sender or DEFAULT_SENDER, rcpt_to=[rcpt],
                      remote_ip="", helo="", tls=False, auth_user=None, size=len(raw), auth_results={}, spam=None,
                      raw=raw)
    return message, rcpt


async def simulate(session: AsyncSession, account: Account, webhook_id: str, *, sender: str | None,
                   subject: str | None, text: str | None, settings: Settings, crypto: Crypto,
                   client: WebhookTransport, renders: RenderPool) -> HttpOutcome:
    webhook = await webhooks.get(session, account, webhook_id)
    message, rcpt = _synthetic(webhook.address, sender=sender, subject=subject, text=text)
    started = time.monotonic()
    try:
        body, content_type = await render_body(renders, message, webhook, rcpt_to=rcpt, simulated=True,
                                               max_inline_attachment_bytes=settings.max_inline_attachment_bytes)
    except RenderFailed as exc:  # a template error is the outcome the user wants to see
        outcome = HttpOutcome(status=None, duration_ms=int((time.monotonic() - started) * 1000),
                              error=f"payload could not be rendered: {exc}", response_excerpt="", retry_after=None)
    else:
        headers = signed_headers(webhook, crypto, msg_id=new_id("sim"), body=body, content_type=content_type)
        outcome = await client.post(webhook.target_url, body, headers)
    delivered = outcome.status is not None and 200 <= outcome.status < 300
    log_attempt(session, webhook_id=webhook.id, outcome=outcome, status="delivered" if delivered else "failed",
                sender=message.mail_from, message_id=message.id, simulated=True)
    return outcome


@dataclass(frozen=True)
class _Destination:
    """What rendering reads of a webhook, for a preview (the webhook need not exist)."""

    id: str
    account_id: str
    address: str
    payload_template: str | None


async def preview(session: AsyncSession, account: Account, *, webhook_id: str | None, template: str | None,
                  address: str | None, sender: str | None, subject: str | None, text: str | None,
                  settings: Settings, renders: RenderPool) -> tuple[bytes, str]:
    """The body a delivery of a synthetic message would send: with ``template`` (None: the
    webhook's; "": the default JSON), to ``address`` (None: the webhook's). Sends nothing."""
    hook = await webhooks.get(session, account, webhook_id) if webhook_id else None
    address = address or (hook.address if hook else PREVIEW_ADDRESS)
    if template is None:
        template = hook.payload_template if hook else None
    message, rcpt = _synthetic(address, sender=sender, subject=subject, text=text)
    destination = _Destination(id=hook.id if hook else new_id("whk"), account_id=account.id, address=address,
                               payload_template=template or None)
    try:
        return await render_body(renders, message, destination, rcpt_to=rcpt, simulated=True,
                                 max_inline_attachment_bytes=settings.max_inline_attachment_bytes)
    except RendererBusy as exc:
        raise Throttled(str(exc), retry_after=math.ceil(renders.timeout)) from None
    except RenderFailed as exc:
        raise Invalid(str(exc), field="payload_template", code="template_error") from None
