"""Where a raw message's header block ends: the first empty line.

The SMTP server looks for it several times per message on its event loop (the Subject, the
From domain, DKIM), so it is found with ``bytes.find`` rather than the regular expression
``\\r?\\n\\r?\\n``, which tries a match at every byte of the message. The two agree on every input
(tests/unit/test_header_end.py); that expression is the definition.
"""

from __future__ import annotations


def header_end(raw: bytes) -> tuple[int, int] | None:
    """The span of the first ``\\r?\\n\\r?\\n`` in ``raw`` (the line break that ends the last
    header line, and the empty line after it), or None when there is none."""
    first = raw.find(b"\n\r\n")  # the usual one; a bare LF pair is only looked for before it
    bare = raw.find(b"\n\n", 0, first + 1 if first >= 0 else len(raw))
    if bare >= 0:
        first, end = bare, bare + 2
    elif first >= 0:
        end = first + 3
    else:
        return None
    start = first - 1 if first and raw[first - 1] == 0x0D else first
    return start, end
