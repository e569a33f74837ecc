"""A synchronous webhook's answer → the SMTP verdict and the refusal's reason: every rule, no I/O."""

import pytest

from conduit.net.http_transport import HttpOutcome
from conduit.services.synchronous import refusal_reason, sanitized, verdict_of


def _answer(status: int | None, body: str = "", content_type: str | None = "text/plain",
            reason: str | None = None) -> HttpOutcome:
    return HttpOutcome(status=status, duration_ms=5, error=None if status else "timeout", response_excerpt=body,
                       retry_after=None, content_type=content_type, smtp_reason=reason)


@pytest.mark.parametrize(("status", "verdict"), [
    (200, "accepted"), (204, "accepted"), (299, "accepted"),
    (400, "refused"), (403, "refused"), (404, "refused"), (410, "refused"), (422, "refused"), (499, "refused"),
    (408, "deferred"), (429, "deferred"), (500, "deferred"), (503, "deferred"), (599, "deferred"),
    (301, "deferred"), (307, "deferred"), (None, "deferred"),
])
def test_the_status_decides_the_verdict(status, verdict):
    assert verdict_of(_answer(status)) == verdict


def test_the_reason_header_comes_first():
    assert refusal_reason(_answer(422, body="from the body", reason="Unknown order 17")) == "Unknown order 17"


def test_an_empty_header_leaves_the_body_to_speak():
    assert refusal_reason(_answer(422, body="from the body", reason=" \t")) == "from the body"


@pytest.mark.parametrize(("body", "content_type", "reason"), [
    ("first line\nsecond line", "text/plain; charset=utf-8", "first line"),
    ("\n\n   indented first line  \r\nmore", "text/html", "indented first line"),
    ("no content type at all", None, "no content type at all"),
    ('{"error": "not for people"}', "application/json", ""),
    ("", "text/plain", ""),
])
def test_a_text_body_gives_its_first_line(body, content_type, reason):
    assert refusal_reason(_answer(422, body=body, content_type=content_type)) == reason


@pytest.mark.parametrize(("text", "clean"), [
    ("plain", "plain"),
    ("tab\tand  spaces", "tab and spaces"),
    ("Empfänger ✉ unbekannt", "Empf?nger ? unbekannt"),
    ("line\r\nRCPT TO:<x@y>", "line RCPT TO:<x@y>"),
    ("nul\x00bell\x07", "nul bell"),
    ("x" * 250, "x" * 200),
    ("  ", ""),
])
def test_a_reason_is_printable_ascii_on_one_line(text, clean):
    assert sanitized(text) == clean
