"""The Subject kept with each message for the Messages API's filter (conduit/mail/subject.py)."""

from __future__ import annotations

import contextlib
import re
from email.header import decode_header, make_header

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduit.mail.subject import MAX_SUBJECT, subject_of


@pytest.mark.parametrize(("raw", "subject"), [
    (b"From: a@example.org\r\nSubject: Order 1234\r\n\r\nbody", "Order 1234"),
    (b"subject: =?utf-8?q?H=C3=A9llo?=\r\n wrapped\r\n\r\n", "Héllo wrapped"),
    (b"From: a@example.org\n\nSubject: in the body\n", ""),
    (b"From: a@example.org\r\n\r\n", ""),
    (b"Subject: =?bogus?x?zz?= \xff\r\n\r\n", "=?bogus?x?zz?= \ufffd"),
    (b"Subject: a\x00b\r\n\r\n", "a\ufffdb"),
    (b"X-Subject: no\r\nSubject: yes\r\n\r\n", "yes"),
])
def test_the_subject_is_read_unfolded_and_decoded(raw, subject):
    assert subject_of(raw) == subject


def test_a_long_subject_is_cut_to_the_columns_width():
    assert subject_of(b"Subject: " + b"x" * 5000 + b"\r\n\r\n") == "x" * MAX_SUBJECT


def _by_regular_expressions(raw: bytes) -> str:
    """The plain reading: regular expressions over the header block and the stdlib's decoder
    for every value (the oracle of the faster code)."""
    head = raw[:64 * 1024]
    end = re.search(rb"\r?\n\r?\n", head)
    if end is not None:
        head = head[: end.start() + 1]
    found = re.search(rb"^subject:[ \t]*((?:[^\r\n]*)(?:\r?\n[ \t][^\r\n]*)*)", head, re.IGNORECASE | re.MULTILINE)
    if found is None:
        return ""
    value = re.sub(rb"\r?\n(?=[ \t])", b"", found.group(1)).decode("utf-8", errors="replace").strip()
    with contextlib.suppress(Exception):  # as the code under test: the text as it is
        value = str(make_header(decode_header(value)))
    value = value.replace("\x00", "\ufffd").encode("utf-8", errors="replace").decode("utf-8")
    return value[:MAX_SUBJECT]


_PIECES = st.sampled_from([b"Subject:", b"subject: ", b"SUBJECT:\t", b"X-Subject: x", b"From: a@b", b"\r\n", b"\n",
                           b"\r", b" ", b"\t", b"=?utf-8?q?H=C3=A9?=", b"=?bogus?", b"?=", b"\x00", b"\xff",
                           b"\xc3\xa9", b"word", b":", b"\r\n\r\n", b"\n\n", b"\n\r\n"])


@settings(max_examples=2000, deadline=None)
@given(st.lists(_PIECES, max_size=24).map(b"".join))
def test_the_subject_is_the_one_regular_expressions_and_the_stdlib_read(raw):
    assert subject_of(raw) == _by_regular_expressions(raw)
