"""The body a webhook receives: the default JSON payload, or the webhook's template rendered
with the same context (plus ``raw``). Pure and synchronous: callers decide where it runs
(conduit.isolation runs it in its renderer processes)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Protocol

import orjson

from conduit.mail.parse import (
    AuthResults,
    DkimResult,
    DmarcResult,
    Envelope,
    PayloadLinks,
    build_payload,
    template_context,
)
from conduit.mail.templates import DEFAULT_TIMEOUT, render_template

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


class StoredMessage(Protocol):
    """What rendering needs of a stored message (a row of the messages table; read only)."""

    @property
    def id(self) -> str: ...
    @property
    def raw(self) -> bytes: ...
    @property
    def received_at(self) -> datetime: ...
    @property
    def mail_from(self) -> str: ...
    @property
    def rcpt_to(self) -> list[str]: ...
    @property
    def remote_ip(self) -> str: ...
    @property
    def helo(self) -> str: ...
    @property
    def tls(self) -> bool: ...
    @property
    def auth_user(self) -> str | None: ...
    @property
    def auth_results(self) -> dict[str, Any]: ...
    @property
    def spam(self) -> dict[str, Any] | None: ...


class Destination(Protocol):
    """What rendering needs of the webhook a delivery is for (read only)."""

    @property
    def id(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def payload_template(self) -> str | None: ...


def render(message: StoredMessage, webhook: Destination, *, rcpt_to: str, simulated: bool,
           max_inline_attachment_bytes: int, links: PayloadLinks | None = None) -> tuple[bytes, str]:
    """(body, content type). Raises TemplateRenderError when the webhook's template fails."""
    payload = message_payload(message, webhook, rcpt_to=rcpt_to, simulated=simulated,
                              max_inline_attachment_bytes=max_inline_attachment_bytes, links=links)
    return payload_body(payload, message.raw, webhook.payload_template)


def message_payload(message: StoredMessage, webhook: Destination, *, rcpt_to: str, simulated: bool,
                    max_inline_attachment_bytes: int, extract_reply: bool = True,
                    links: PayloadLinks | None = None) -> dict[str, Any]:
    """The default payload of ``message`` for one delivery (the parsing half of ``render``)."""
    auth = message.auth_results or {}
    spf = auth.get("spf") or {}
    return build_payload(
        message.raw, message_id=message.id, received_at=message.received_at,
        envelope=Envelope(mail_from=message.mail_from, rcpt_to=tuple(message.rcpt_to), remote_ip=message.remote_ip,
                          helo=message.helo, tls=message.tls, auth_user=message.auth_user),
        rcpt_to=rcpt_to, webhook_id=webhook.id, webhook_address=webhook.address,
        auth=AuthResults(spf_result=spf.get("result", "none"), spf_domain=spf.get("domain", ""),
                         dkim=tuple(DkimResult(domain=d["domain"], result=d["result"]) for d in auth.get("dkim", ())),
                         dmarc=_dmarc(auth.get("dmarc"))),
        spam=message.spam,
        simulated=simulated, max_inline_attachment_bytes=max_inline_attachment_bytes, extract_reply=extract_reply,
        links=links)


def payload_body(payload: dict[str, Any], raw: bytes, template: str | None, *, timeout: float = DEFAULT_TIMEOUT,
                 deadline: float | None = None) -> tuple[bytes, str]:
    """(body, content type) of a payload: its JSON, or ``template`` rendered with it (the
    rendering half of ``render``; ``timeout`` and ``deadline`` as in ``render_template``)."""
    if not template:
        return encode_payload(payload), JSON
    text = render_template(template, template_context(payload, raw), timeout=timeout, deadline=deadline)
    return text.encode(), content_type_of(text)


def _dmarc(stored: Any) -> DmarcResult:
    """The stored DMARC verdict: an object ``{result, policy, domain}``, or a plain string holding
    only the result (the form older rows have)."""
    if isinstance(stored, dict):
        return DmarcResult(result=stored.get("result") or "none", policy=stored.get("policy"),
                           domain=stored.get("domain"))
    return DmarcResult(result=stored if isinstance(stored, str) and stored else "none")


def encode_payload(payload: dict[str, Any]) -> bytes:
    """The default payload's JSON: UTF-8, compact. orjson gives the same bytes as
    ``json.dumps(ensure_ascii=False, separators=(",", ":"))`` on the payload corpus
    (tests/unit/test_payload_corpus.py), faster."""
    return orjson.dumps(payload)


def content_type_of(text: str) -> str:
    """A template that renders JSON is sent as JSON; anything else as UTF-8 text."""
    try:
        json.loads(text)
    except ValueError:
        return TEXT
    return JSON
