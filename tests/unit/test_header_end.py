"""The end of the header block, found with bytes.find, against the regular expression that defines it."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from conduit.mail.header_end import header_end

_DEFINITION = re.compile(rb"\r?\n\r?\n")


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"Subject: x", b" ", b"\t"]), max_size=30).map(b"".join))
def test_the_header_block_ends_where_the_regular_expression_says(raw):
    found = _DEFINITION.search(raw)
    assert header_end(raw) == (found.span() if found else None)


def test_common_shapes():
    assert header_end(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\n") == (10, 14)
    assert header_end(b"A: 1\nB: 2\n\nbody") == (9, 11)
    assert header_end(b"\r\nbody") is None  # no empty line after a header line: the caller decides
    assert header_end(b"A: 1\r\n") is None
