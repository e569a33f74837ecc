"""The Subject of a raw message, read cheaply at receipt (on the SMTP server's event loop) for
the Messages API's subject filter: only the top header block is looked at, and only so far."""

from __future__ import annotations

import re
from email.header import decode_header, make_header

MAX_SUBJECT = 998  # RFC 5322's line limit; the column's width
_HEADER_LIMIT = 64 * 1024  # a Subject further down than this is not looked for
_SUBJECT = re.compile(rb"^subject:[ \t]*((?:[^\r\n]*)(?:\r?\n[ \t][^\r\n]*)*)", re.IGNORECASE | re.MULTILINE)
_END_OF_HEADERS = re.compile(rb"\r?\n\r?\n")


def subject_of(raw: bytes) -> str:
    """The first Subject header, unfolded and RFC 2047-decoded; "" when there is none. Never
    raises: the mail is untrusted, and undecodable text is replaced, not refused."""
    head = raw[:_HEADER_LIMIT]
    end = _END_OF_HEADERS.search(head)
    if end is not None:
        head = head[: end.start() + 1]
    found = _SUBJECT.search(head)
    if found is None:
        return ""
    value = re.sub(rb"\r?\n(?=[ \t])", b"", found.group(1)).decode("utf-8", errors="replace").strip()
    value = _decoded(value)
    value = value.replace("\x00", "\ufffd").encode("utf-8", errors="replace").decode("utf-8")
    return value[:MAX_SUBJECT]


def _decoded(value: str) -> str:
    """RFC 2047 encoded words decoded; the text as it is when they cannot be."""
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # noqa: BLE001 - the stdlib raises many kinds on hostile encoded words
        return value
