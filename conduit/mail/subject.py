"""The Subject of a raw message, read cheaply at receipt (on the SMTP server's event loop) for
the Messages API's subject filter: only the top header block is looked at, and only so far."""

from __future__ import annotations

import re
from email.header import decode_header, make_header

from conduit.mail.header_end import header_end

MAX_SUBJECT = 998  # RFC 5322's line limit; the column's width
_HEADER_LIMIT = 64 * 1024  # a Subject further down than this is not looked for
_VALUE = re.compile(rb"[ \t]*((?:[^\r\n]*)(?:\r?\n[ \t][^\r\n]*)*)")  # after "Subject:", folded lines too
_FOLD = re.compile(rb"\r?\n(?=[ \t])")


def subject_of(raw: bytes) -> str:
    """The first Subject header, unfolded and RFC 2047-decoded; "" when there is none. Never
    raises: the mail is untrusted, and undecodable text is replaced, not refused.

    It runs on the SMTP server's event loop for every message, so the field is found with
    ``bytes.find`` rather than a regular expression tried at each line."""
    head = raw[:_HEADER_LIMIT]
    if (end := header_end(head)) is not None:
        head = head[:end[0] + 1]
    lowered = head.lower()
    if lowered.startswith(b"subject:"):
        start = 0
    elif (line_break := lowered.find(b"\nsubject:")) >= 0:
        start = line_break + 1
    else:
        return ""
    found = _VALUE.match(head, start + len(b"subject:"))
    value = found.group(1) if found else b""
    if b"\n" in value:
        value = _FOLD.sub(b"", value)
    text = _decoded(value.decode("utf-8", errors="replace").strip())
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text.encode("utf-8", errors="replace").decode("utf-8")[:MAX_SUBJECT]


def _decoded(value: str) -> str:
    """RFC 2047 encoded words decoded; the text as it is when they cannot be (or there are none:
    the stdlib would give it back unchanged, at a cost)."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # noqa: BLE001 - the stdlib raises many kinds on hostile encoded words
        return value
