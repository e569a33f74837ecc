"""Simulate: a synthetic message rendered, signed and POSTed exactly like a real delivery,
synchronously, with a delivery log marked simulated. It does not use the queue, so it does
not count against the webhook's rate limit."""

from __future__ import annotations

import time

from sqlalchemy.ext.asyncio import AsyncSession

from conduit.clock import new_id, now
from conduit.config import Settings
from conduit.db.models import Account, Message
from conduit.delivery.http import HttpOutcome, WebhookClient
from conduit.delivery.outcomes import log_attempt
from conduit.delivery.render import render_body, signed_headers
from conduit.errors import Invalid
from conduit.mail.synthetic import build_synthetic_message
from conduit.services import webhooks
from conduit.services.crypto import Crypto

DEFAULT_SENDER = "simulator@conduit.invalid"


async def simulate(session: AsyncSession, account: Account, webhook_id: str, *, sender: str | None,
                   subject: str | None, text: str | None, settings: Settings, crypto: Crypto,
                   client: WebhookClient) -> HttpOutcome:
    webhook = await webhooks.get(session, account, webhook_id)
    rcpt = webhook.address.replace("*@", "test@", 1)
    try:
        raw = build_synthetic_message(from_addr=sender, to_addr=rcpt, subject=subject, text=text)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    message = Message(id=new_id("msg"), received_at=now(), mail_from=sender or DEFAULT_SENDER, rcpt_to=[rcpt],
                      remote_ip="", helo="", tls=False, auth_user=None, size=len(raw), auth_results={}, raw=raw)
    started = time.monotonic()
    try:
        body, content_type = await render_body(message, webhook, rcpt_to=rcpt, settings=settings, simulated=True)
    except Exception as exc:  # noqa: BLE001 - a template error is the outcome the user wants to see
        outcome = HttpOutcome(status=None, duration_ms=int((time.monotonic() - started) * 1000),
                              error=f"payload could not be rendered: {exc}", response_excerpt="", retry_after=None)
    else:
        headers = signed_headers(webhook, crypto, msg_id=new_id("sim"), body=body, content_type=content_type)
        outcome = await client.post(webhook.target_url, body, headers)
    delivered = outcome.status is not None and 200 <= outcome.status < 300
    log_attempt(session, webhook_id=webhook.id, outcome=outcome, status="delivered" if delivered else "failed",
                sender=message.mail_from, message_id=message.id, simulated=True)
    return outcome
