"""The webhook transport: what the worker and "simulate" need from an HTTP client, and what
every transport reports the same way.

Two transports implement it: Conduit's own client (``conduit.net.http_client``, the default)
and one built on aiohttp (``conduit.net.http_aiohttp``), chosen with ``CONDUIT_HTTP_CLIENT``.
The aiohttp one is the reference the test suite holds the own client to
(``tests/integration/test_http_client.py`` runs every case against both). Both take their
targets, header rules and SSRF guard from ``conduit.net.http_target`` and their proxy rules
from ``conduit.net.http_proxy``; this module holds the outcome and its sentences.
"""

from __future__ import annotations

import codecs
import time
from http import HTTPStatus
from typing import NamedTuple, Protocol

import conduit

USER_AGENT = f"Conduit/{conduit.__version__}"
MAX_RESPONSE_BYTES = 64 * 1024  # read at most this much of a response; a longer one drops its connection
EXCERPT_BYTES = 1024  # what an outcome keeps of the response body
IDLE_TIMEOUT = 15.0  # seconds an unused keep-alive connection stays open
_FIRST_LINE_CHARS = 200  # of the body, in the error sentence of a failed attempt


class HttpOutcome(NamedTuple):
    """One POST's result (an immutable record: one is built per delivery, and a named tuple
    costs less to build than a frozen dataclass).

    ``status`` is None when no complete response of the receiver arrived, and ``error`` then
    says why. For a response, ``error`` is None on 2xx and a sentence otherwise (status, its
    standard reason phrase, the first line of the body). ``response_excerpt`` is the first
    KiB of the body, decoded as UTF-8 with replacements; ``retry_after``, ``content_type`` and
    ``smtp_reason`` are the raw ``Retry-After``, ``Content-Type`` and ``X-Conduit-Smtp-Reason``
    headers (their first occurrence; the last is a synchronous webhook's refusal text).
    """

    status: int | None
    duration_ms: int
    error: str | None
    response_excerpt: str
    retry_after: str | None
    content_type: str | None = None
    smtp_reason: str | None = None


class WebhookTransport(Protocol):
    """POSTs a ready body. ``post`` never raises (except on cancellation): every failure is an
    ``HttpOutcome`` with ``error`` set. ``timeout`` bounds this POST instead of the transport's
    total timeout (a synchronous delivery's own). ``close`` drops the pooled connections."""

    async def post(self, url: str, body: bytes, headers: dict[str, str], *,
                   timeout: float | None = None) -> HttpOutcome: ...

    async def close(self) -> None: ...


class ConnectError(Exception):
    """Every checked address of the host (or of the proxy: ``what``) refused or failed the
    connection, or TLS failed."""

    def __init__(self, host: str, port: int, errors: list[OSError], *, what: str = "") -> None:
        self.host = host
        self.port = port
        self.errors = errors
        first = errors[0]
        if len(errors) == 1 or all(str(error) == str(first) for error in errors):
            reason = first.strerror or str(first)
        else:
            reason = "Multiple exceptions: " + ", ".join(str(error) for error in errors)
        super().__init__(f"could not connect to {what}{host}:{port}: {reason}")


def elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def failure(started: float, error: str) -> HttpOutcome:
    """No response from the receiver: ``error`` says why."""
    return HttpOutcome(None, elapsed_ms(started), error, "", None)


def response_outcome(started: float, status: int, body: bytes, retry_after: str | None,
                     content_type: str | None, smtp_reason: str | None = None) -> HttpOutcome:
    """The receiver's response, with ``body`` (as much of it as was read) cut to the excerpt."""
    excerpt = body.decode("utf-8", errors="replace") if len(body) <= EXCERPT_BYTES else decode_excerpt(body)
    error = None if 200 <= status < 300 else status_error(status, excerpt)
    return HttpOutcome(status, int((time.monotonic() - started) * 1000), error, excerpt, retry_after, content_type,
                       smtp_reason)


def decode_excerpt(body: bytes) -> str:
    """The first ``EXCERPT_BYTES`` of ``body`` as text; a character cut in two at the end is left out."""
    if not body:
        return ""
    if len(body) <= EXCERPT_BYTES:
        return body.decode("utf-8", errors="replace")
    return codecs.getincrementaldecoder("utf-8")(errors="replace").decode(body[:EXCERPT_BYTES], final=False)


def status_error(status: int, excerpt: str) -> str | None:
    """None for 2xx; otherwise the delivery log's sentence: ``HTTP 503 Service Unavailable: <first
    line of the body>``. A redirect says that it was not followed (the target URL needs fixing)."""
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return "redirect not followed"
    sentence = f"HTTP {status} {reason_phrase(status)}".rstrip()
    line = first_line(excerpt)
    return f"{sentence}: {line}" if line else sentence


def reason_phrase(status: int) -> str:
    """The standard phrase (what the receiver wrote on its status line is not kept)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def first_line(text: str) -> str:
    """The first non-blank line of ``text``, control characters replaced, at most 200 characters."""
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if line:
            if not line.isprintable():
                line = "".join(ch if ch.isprintable() else " " for ch in line)
            return line if len(line) <= _FIRST_LINE_CHARS else line[:_FIRST_LINE_CHARS - 1] + "…"
    return ""
