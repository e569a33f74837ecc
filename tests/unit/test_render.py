"""Rendering a stored message: the ``auth`` results as the SMTP server stored them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from conduit.mail.render import render

RAW = b"From: Ann <ann@example.org>\r\nTo: box@example.com\r\nSubject: Hi\r\n\r\nHello\r\n"


@dataclass
class Stored:
    auth_results: dict[str, Any]
    id: str = "msg_1"
    raw: bytes = RAW
    received_at: datetime = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
    mail_from: str = "ann@example.org"
    rcpt_to: list[str] = field(default_factory=lambda: ["box@example.com"])
    remote_ip: str = "203.0.113.9"
    helo: str = "mx.example.org"
    tls: bool = False
    auth_user: str | None = None
    spam: dict | None = None


@dataclass
class Webhook:
    id: str = "wh_1"
    address: str = "box@example.com"
    payload_template: str | None = None


def _auth(auth_results: dict[str, Any]) -> dict[str, Any]:
    body, content_type = render(Stored(auth_results), Webhook(), rcpt_to="box@example.com", simulated=False,
                                max_inline_attachment_bytes=1024)
    assert content_type == "application/json"
    return json.loads(body)["auth"]


def test_stored_dmarc_object_reaches_the_payload():
    stored = {"spf": {"result": "pass", "domain": "example.org"}, "dkim": [{"domain": "example.org", "result": "pass"}],
              "dmarc": {"result": "pass", "policy": "reject", "domain": "example.org"}}
    assert _auth(stored) == stored


@pytest.mark.parametrize(("stored", "dmarc"), [
    ("fail", {"result": "fail", "policy": None, "domain": None}),  # the form older rows have
    ("", {"result": "none", "policy": None, "domain": None}),
    (None, {"result": "none", "policy": None, "domain": None}),
])
def test_a_dmarc_result_stored_as_a_string_is_read_as_an_object(stored, dmarc):
    auth = {"spf": {"result": "none", "domain": ""}, "dkim": []}
    if stored is not None:
        auth["dmarc"] = stored
    assert _auth(auth)["dmarc"] == dmarc


def test_a_message_without_auth_results_renders_empty_ones():
    assert _auth({}) == {"spf": {"result": "none", "domain": ""}, "dkim": [],
                         "dmarc": {"result": "none", "policy": None, "domain": None}}
