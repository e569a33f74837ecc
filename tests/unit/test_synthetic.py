"""The simulate endpoint's synthetic message: valid, parseable, injection-proof."""

from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser

import pytest

from conduit.mail.parse import AuthResults, Envelope, build_payload
from conduit.mail.synthetic import DEFAULT_FROM, DEFAULT_SUBJECT, DEFAULT_TEXT, build_synthetic_message


def _parse(raw: bytes):
    return BytesParser(policy=policy.default).parsebytes(raw)


def _payload(raw: bytes) -> dict:
    return build_payload(
        raw, message_id="msg_1", received_at=datetime.now(UTC), envelope=Envelope("", ("hook@example.com",)),
        rcpt_to="hook@example.com", webhook_id="wh_1", webhook_address="hook@example.com", auth=AuthResults(),
        simulated=True, max_inline_attachment_bytes=1024,
    )


def test_defaults():
    raw = build_synthetic_message(from_addr=None, to_addr="hook@example.com", subject=None, text=None)
    message = _parse(raw)
    assert message["From"] == DEFAULT_FROM
    assert message["To"] == "hook@example.com"
    assert message["Subject"] == DEFAULT_SUBJECT
    assert message.get_content() == DEFAULT_TEXT.replace("\n", "\r\n")
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message["Date"].datetime.tzinfo is not None
    assert message["Message-ID"].startswith("<") and message["Message-ID"].endswith("@conduit.invalid>")
    assert not message.defects


def test_crlf_line_endings_and_ascii_headers():
    raw = build_synthetic_message(from_addr="Jörg <j@example.com>", to_addr="h@example.com", subject="Grüße",
                                  text="Hällo")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()  # RFC 2047 encoded words
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert _parse(raw)["Subject"] == "Grüße"


def test_given_fields_arrive_in_the_payload():
    raw = build_synthetic_message(from_addr="Alice Example <alice@example.org>", to_addr="hook+tag@example.com",
                                  subject="Grüße 😀", text="Hello\nsecond line\n")
    payload = _payload(raw)
    assert payload["from"] == [{"address": "alice@example.org", "name": "Alice Example"}]
    assert payload["to"] == [{"address": "hook+tag@example.com", "name": ""}]
    assert payload["subject"] == "Grüße 😀"
    assert payload["text"].replace("\r\n", "\n") == "Hello\nsecond line\n"
    assert payload["date"] is not None
    assert payload["parse_warnings"] == []


def test_blank_from_means_default_and_empty_subject_or_text_are_kept():
    raw = build_synthetic_message(from_addr="  ", to_addr="hook@example.com", subject="", text="")
    message = _parse(raw)
    assert message["From"] == DEFAULT_FROM
    assert message["Subject"] == ""
    assert message.get_content().strip() == ""


def test_internationalised_addresses_use_utf8_headers():
    raw = build_synthetic_message(from_addr="jörg@exämple.de", to_addr="*@example.com", subject=None, text=None)
    payload = _payload(raw)
    assert payload["from"] == [{"address": "jörg@exämple.de", "name": ""}]
    assert payload["to"] == [{"address": "*@example.com", "name": ""}]


def test_message_ids_are_unique():
    ids = {_parse(build_synthetic_message(from_addr=None, to_addr="h@example.com", subject=None, text=None))
           ["Message-ID"] for _ in range(20)}
    assert len(ids) == 20


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("from_addr", "a@example.com\r\nBcc: victim@example.com"),
        ("from_addr", "a@example.com\nX-Injected: 1"),
        ("subject", "hello\r\nBcc: victim@example.com"),
        ("subject", "hello\rworld"),
        ("subject", "hello\x00"),
        ("to_addr", "hook@example.com\r\nBcc: victim@example.com"),
    ],
)
def test_line_breaks_are_refused(field, value):
    arguments = {"from_addr": None, "to_addr": "hook@example.com", "subject": None, "text": None, field: value}
    with pytest.raises(ValueError, match="line breaks"):
        build_synthetic_message(**arguments)


@pytest.mark.parametrize("value", ["not an address", "a@example.com, b@example.com", "<>", "@example.com", "a@"])
def test_from_must_be_one_address(value):
    with pytest.raises(ValueError, match="single email address"):
        build_synthetic_message(from_addr=value, to_addr="hook@example.com", subject=None, text=None)


def test_body_line_breaks_are_fine():
    raw = build_synthetic_message(from_addr=None, to_addr="h@example.com", subject=None,
                                  text="From: not a header\r\n\r\nBcc: x@example.com\n")
    message = _parse(raw)
    assert message["Bcc"] is None
    assert "Bcc: x@example.com" in message.get_content()
