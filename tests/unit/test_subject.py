"""The Subject kept with each message for the Messages API's filter (conduit/mail/subject.py)."""

from __future__ import annotations

import pytest

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
