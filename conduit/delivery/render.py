"""The body a webhook receives: the default JSON payload, or the webhook's template rendered
with the same context (plus ``raw``). Large messages are parsed in a thread, off the loop."""

from __future__ import annotations

import asyncio
import functools
import json
import time

import orjson

from conduit.config import Settings
from conduit.db.models import Message, Webhook
from conduit.delivery.signing import sign_headers
from conduit.delivery.templates import render_template
from conduit.mail.parse import AuthResults, DkimResult, Envelope, build_payload, template_context
from conduit.services.crypto import Crypto

IN_THREAD_ABOVE = 64 * 1024  # bytes of raw message; smaller ones are cheaper to parse inline
JSON = "application/json"


def _render(message: Message, webhook: Webhook, rcpt_to: str, settings: Settings, simulated: bool) -> tuple[bytes, str]:
    auth = message.auth_results or {}
    spf = auth.get("spf") or {}
    payload = build_payload(
        message.raw, message_id=message.id, received_at=message.received_at,
        envelope=Envelope(mail_from=message.mail_from, rcpt_to=tuple(message.rcpt_to), remote_ip=message.remote_ip,
                          helo=message.helo, tls=message.tls, auth_user=message.auth_user),
        rcpt_to=rcpt_to, webhook_id=webhook.id, webhook_address=webhook.address,
        auth=AuthResults(spf_result=spf.get("result", "none"), spf_domain=spf.get("domain", ""),
                         dkim=tuple(DkimResult(domain=d["domain"], result=d["result"]) for d in auth.get("dkim", ())),
                         dmarc=auth.get("dmarc", "none")),
        simulated=simulated, max_inline_attachment_bytes=settings.max_inline_attachment_bytes)
    if not webhook.payload_template:
        return encode_payload(payload), JSON
    text = render_template(webhook.payload_template, template_context(payload, message.raw))
    return text.encode(), _content_type_of(text)


def encode_payload(payload: dict) -> bytes:
    """The default payload's JSON: UTF-8, compact. orjson gives the same bytes as
    ``json.dumps(ensure_ascii=False, separators=(",", ":"))`` on the payload corpus
    (tests/unit/test_payload_corpus.py), in half the time at 100 KiB."""
    return orjson.dumps(payload)


def _content_type_of(text: str) -> str:
    """A template that renders JSON is sent as JSON; anything else as UTF-8 text."""
    try:
        json.loads(text)
    except ValueError:
        return "text/plain; charset=utf-8"
    return JSON


async def render_body(message: Message, webhook: Webhook, *, rcpt_to: str, settings: Settings,
                      simulated: bool) -> tuple[bytes, str]:
    """(body, content type). Raises on a template error: the caller fails that attempt.

    Templates always render in a thread: their time bound must not stall the event loop.
    """
    if webhook.payload_template or len(message.raw) > IN_THREAD_ABOVE:
        return await asyncio.to_thread(_render, message, webhook, rcpt_to, settings, simulated)
    return _render(message, webhook, rcpt_to, settings, simulated)


def signed_headers(webhook: Webhook, crypto: Crypto, *, msg_id: str, body: bytes,
                   content_type: str) -> dict[str, str]:
    """Content-Type, the webhook's custom headers, and the Standard Webhooks signature headers.

    ``msg_id`` is the job id: stable across retries, so receivers can deduplicate.
    """
    headers = {"Content-Type": content_type, **webhook.custom_headers}
    headers.update(sign_headers(_secret(crypto, webhook.secret_encrypted), msg_id=msg_id,
                                timestamp=int(time.time()), body=body))
    return headers


@functools.lru_cache(maxsize=1024)
def _secret(crypto: Crypto, secret_encrypted: str) -> str:
    """The webhook's signing secret, decrypted once per ciphertext (Fernet's check and decryption
    were 3 % of the worker's CPU, per delivery). A rotated secret is a new ciphertext."""
    return crypto.decrypt(secret_encrypted)
