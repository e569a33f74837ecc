"""The payload of every message in a corpus is exactly the one stored for it.

Why: parsing is tuned for speed (fast paths that skip the stdlib's structured header parser
when it cannot change the result, reply_text's own extractor); any difference in the JSON a
receiver gets is a regression. The corpus holds the messages of test_parse.py, test_reply.py
and test_synthetic.py, some of test_parse.py's random mutations, realistic mail (replies with
history, HTML alternatives, attachments, encoded words, other charsets, odd addresses) in
``payload_corpus/*.eml``, and large messages made below. ``payload_corpus/expected.json`` was
written by the parser before the fast paths; rewrite it only for an intended change of the
payload: ``.venv/bin/python -m tests.unit.test_payload_corpus``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conduit.mail import parse
from conduit.mail.parse import AuthResults, DkimResult, DmarcResult, Envelope, build_payload
from conduit.mail.render import encode_payload

CORPUS = Path(__file__).parent / "payload_corpus"
EXPECTED = CORPUS / "expected.json"
STORED_WHOLE = 400  # a field whose JSON is longer is stored as its SHA-256 (keeps the file small)


def smtp_source(size: int) -> bytes:
    """A message as Postfix's smtp-source sends it with ``-l size`` (the benchmark's load)."""
    data = bytearray(b"X" * size)
    for end in range(80, size, 80):
        data[end - 80] = ord("0123456789"[(end // 80) % 10])
        data[end - 2 : end] = b"\r\n"
    return (b"From: <sender@example.org>\r\nTo: <hook@bench.example>\r\n"
            b"Date: Fri, 27 Nov 2026 20:04:19 +0000 (UTC)\r\nMessage-Id: <50c9.0003.0000@client.bench.example>\r\n"
            b"\r\n" + bytes(data) + b"\r\n")


def _over_the_header_budget() -> bytes:
    """Address headers that exhaust the structured-parsing budget, so later ones are read plainly."""
    to = ", ".join(f"Person {i} <p{i}@example.com>" for i in range(300))
    cc = ", ".join(f"=?utf-8?q?P=C3=A9rson_{i}?= <q{i}@example.com>" for i in range(250))
    return (("".join(f"To: {to}\r\n" for _ in range(12)) + "".join(f"Cc: {cc}\r\n" for _ in range(12))
             + "Reply-To: Last <last@example.com>\r\nSubject: =?utf-8?q?late?=\r\n\r\nbody\r\n").encode())


GENERATED: dict[str, Callable[[], bytes]] = {
    "smtp_source_4k": lambda: smtp_source(4096),
    "smtp_source_100k": lambda: smtp_source(100 * 1024),
    "long_text_without_quotes": lambda: b"\r\n" + b"line of a long message\r\n" * 5000,
    "long_text_with_quotes_on_top": lambda: (
        b"Content-Type: text/plain\r\n\r\nYes.\r\n\r\nOn Mon, 1 Jan 2024, Bob <b@example.com> wrote:\r\n"
        + b"> quoted line of a long history\r\n" * 2000),
    "long_text_with_signature_late": lambda: (
        b"\r\n" + b"plain line, nothing to strip\r\n" * 1500 + b"\r\n-- \r\nBob\r\n"),
    "blank_line_flood": lambda: b"\r\nhello" + b"\r\n" * 30000 + b"bye",
    "very_long_header": ("Subject: " + "=?utf-8?q?a?= " * 3000 + "\r\n\r\nx").encode,
    "over_the_header_budget": _over_the_header_budget,
}

RECEIVED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
SPAM = {"score": 1.2, "required_score": 15.0, "action": "no action",
        "symbols": [{"name": "DATE_IN_PAST", "score": 1.0}, {"name": "MIME_GOOD", "score": -0.1}]}
FROM_ARGUMENTS = {  # the fields that come from build_payload's arguments, not from the message
    "id": "msg_1",
    "event": "email.received",
    "received_at": "2024-05-01T12:00:00Z",
    "envelope": {"mail_from": "sender@example.org", "rcpt_to": ["hook+tag@example.com"], "remote_ip": "203.0.113.9",
                 "helo": "mx.example.org", "tls": True, "auth_user": "user"},
    "mailbox_hash": "tag",
    "auth": {"spf": {"result": "pass", "domain": "example.org"}, "dkim": [{"domain": "example.org", "result": "pass"}],
             "dmarc": {"result": "pass", "policy": "reject", "domain": "example.org"}},
    "spam": SPAM,
    "webhook": {"id": "wh_1", "address": "hook@example.com"},
    "simulated": False,
}


def _built(raw: bytes) -> dict:
    return build_payload(
        raw, message_id="msg_1", received_at=RECEIVED,
        envelope=Envelope(mail_from="sender@example.org", rcpt_to=("hook+tag@example.com",), remote_ip="203.0.113.9",
                          helo="mx.example.org", tls=True, auth_user="user"),
        rcpt_to="hook+tag@example.com", webhook_id="wh_1", webhook_address="hook@example.com",
        auth=AuthResults(spf_result="pass", spf_domain="example.org", dkim=(DkimResult("example.org", "pass"),),
                         dmarc=DmarcResult("pass", policy="reject", domain="example.org")),
        simulated=False, max_inline_attachment_bytes=64 * 1024, spam=SPAM,
    )


def _payload(raw: bytes) -> dict:
    return json.loads(encode_payload(_built(raw)))  # what the receiver gets: JSON, not tuples


EXPECTED_ORDER = [
    "id", "event", "received_at", "envelope", "message_id", "from", "to", "cc", "reply_to", "subject", "date", "text",
    "text_from_html", "html", "reply_text", "mailbox_hash", "headers", "attachments", "raw_url", "auth", "spam",
    "webhook", "simulated", "parse_warnings",
]


def _cases() -> dict[str, Callable[[], bytes]]:
    stored = {path.stem: path.read_bytes for path in sorted(CORPUS.glob("*.eml"))}
    return stored | GENERATED


def _stored_form(payload: dict) -> dict:
    """The payload with each long field replaced by its digest: a failure still names the field."""
    stored = {}
    for field, value in payload.items():
        if field in FROM_ARGUMENTS:
            continue
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
        stored[field] = value if len(text) <= STORED_WHOLE else "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return stored


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads(EXPECTED.read_text())


def test_every_case_has_an_expected_payload(expected):
    assert sorted(expected) == sorted(_cases())


@pytest.mark.parametrize("name", sorted(_cases()))
def test_payload_is_unchanged(name, expected):
    payload = _payload(_cases()[name]())
    assert {field: payload[field] for field in FROM_ARGUMENTS} == FROM_ARGUMENTS
    assert _stored_form(payload) == expected[name]
    assert list(payload) == EXPECTED_ORDER  # the JSON's key order too


@pytest.mark.parametrize("name", sorted(_cases()))
def test_the_json_is_the_standard_librarys_byte_for_byte(name):
    payload = _built(_cases()[name]())
    assert encode_payload(payload) == json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def test_reused_header_objects_change_nothing():
    """Parsed header objects are shared between messages: a payload is the same either way."""
    stored = {name: make() for name, make in _cases().items() if name not in GENERATED}
    warm = {name: _payload(raw) for name, raw in stored.items()}
    for name, raw in stored.items():
        parse._POLICY.header_factory._shared.cache_clear()
        assert _payload(raw) == warm[name], name


if __name__ == "__main__":
    lines = [f"{json.dumps(name)}: {json.dumps(_stored_form(_payload(make())), ensure_ascii=False, sort_keys=True)}"
             for name, make in sorted(_cases().items())]
    EXPECTED.write_text("{\n" + ",\n".join(lines) + "\n}\n")  # a case a line: readable diffs
