"""``reply_text``: the new part of a top-posted reply, without quoted history and signature.

How, in time linear in the text (every regular expression that reads the text is RE2's, see
``reply_patterns``; every loop visits each line a bounded number of times):

1. the top of the text is normalised: each line stripped, runs of blank lines shortened, Outlook
   separators after a blank line dropped;
2. the quoted history begins at the first quoted-history header ("On ... wrote:", "From: ...
   Sent: ...", "-----Original Message-----"), or at the separator line just above it; when
   nothing precedes it (a forward), the part that matters is the one between the first header
   and the next;
3. from that part, the signature (from its first line to the end), disclaimers, and a trailing
   block of ">"-quoted lines are removed.

mail-parser-reply follows the same rules; ``tests/unit/test_reply_oracle.py`` compares the two on
the payload corpus and on generated texts, and lists where this one differs on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass

from conduit.mail import reply_patterns as patterns

SCAN_CHARS = 32 * 1024  # only the top of the text is read: quoted history starts near the top
_SEPARATOR_CHARS = "_-"
_SEPARATOR_MIN = 32  # Outlook's line of underscores
_SENTENCE_END = ".!?"


def reply_text(text: str | None) -> tuple[str | None, bool]:
    """The new part of a top-posted reply, and whether extraction worked (it does not fail on
    any text; ``False`` would mean a fault here, and then the whole text is given).

    When no quoted history shows up in the top ``SCAN_CHARS`` of a longer text, the whole text
    is kept rather than a cut-off piece of it. Lone surrogates (which no mail decodes to) come
    back as U+FFFD.
    """
    if not text:
        return text, True
    try:
        try:
            found = _extract(text, text[:SCAN_CHARS])
        except UnicodeEncodeError:  # a lone surrogate: RE2 reads UTF-8
            found = _extract(text, _without_surrogates(text[:SCAN_CHARS]))
    except Exception:  # noqa: BLE001 - a fault here must not fail a delivery: the whole text, with a warning
        return text, False
    return (text if found is None else found), True


@dataclass(frozen=True)
class _Header:
    start: int  # character offsets in the normalised text
    end: int
    byte_end: int  # where the search for the next header goes on


def _extract(text: str, top: str) -> str | None:
    """The reply, or None when only the whole text can be given; ``top`` is the part read."""
    normalized = normalize(top)
    headers = _HeaderSearch(normalized)
    first = headers.next_after(None)
    if first is None:
        return None if len(text) > SCAN_CHARS else _clean(normalized, header_end=0)
    start = _separator_above(normalized, first.start)
    if normalized[:start].strip():
        return _clean(normalized[:start], header_end=0)
    # Nothing above the first header (a forward): what the first header with text after it
    # introduces, up to the next header.
    header = first
    while True:
        following = headers.next_after(header)
        end = _separator_above(normalized, following.start) if following else len(normalized)
        if following is None or normalized[header.end : end].strip():
            break
        header = following
    if following is None and header is first and len(text) > SCAN_CHARS:
        return None
    return _clean(normalized[header.start : end], header_end=header.end - header.start)


def _without_surrogates(text: str) -> str:
    return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in text)


def normalize(text: str) -> str:
    """Lines stripped, two or more blank lines in a row made one (at the very top: two), and an
    Outlook separator that follows a blank line dropped with the blank lines before it."""
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = list(map(str.strip, text.split("\n")))
    normalized = "\n".join(lines)
    blank_inside = lines.count("") - (lines[-1] == "")  # single-character scans are cheap, longer ones are not
    if blank_inside >= 2 and "\n\n\n" in normalized:
        normalized = patterns.BLANK_RUN.sub("\n\n", normalized)
    if blank_inside and ("_" in normalized or "-" in normalized) and ("\n\n_" in normalized or "\n\n-" in normalized):
        normalized = patterns.OUTLOOK_SEPARATOR.sub(r"\1\n", normalized)
    return normalized


class _HeaderSearch:
    """Quoted-history headers in order, found by RE2 searches over the text's UTF-8 bytes,
    encoded once (searching a str from an offset would encode all of it again each time), with
    byte offsets turned into character offsets as the search moves forward."""

    def __init__(self, text: str) -> None:
        # Every header holds a colon (full-width in Chinese) or dashes: much of the mail that
        # quotes nothing is not searched at all.
        self.possible = ":" in text or "：" in text or "-" in text
        self.data = text.encode("utf-8") if self.possible else b""
        self.ascii = len(self.data) == len(text)
        self.byte_mark = self.char_mark = 0

    def next_after(self, previous: _Header | None) -> _Header | None:
        """The first header after ``previous`` (at or after the start: None)."""
        if not self.possible:
            return None
        at = previous.byte_end if previous else 0
        while True:
            match = patterns.HEADER.search(self.data, at)
            if match is None:
                return None
            start, end = match.span()
            if patterns.REPEATED_LEAD.match(self.data, start, end) is None:
                return _Header(self._char_offset(start), self._char_offset(end), end)
            # "On On ...": no header here; the search goes on from the end of this line (where
            # the next line's header block, which may begin with its line break, can start).
            at = self.data.find(b"\n", start)
            if at < 0:
                return None

    def _char_offset(self, offset: int) -> int:
        """The character offset of a byte offset at or after the last one converted."""
        if self.ascii:
            return offset
        self.char_mark += len(self.data[self.byte_mark : offset].decode("utf-8"))
        self.byte_mark = offset
        return self.char_mark


def _separator_above(text: str, start: int) -> int:
    """Where the quoted history begins: at the Outlook separator line just above the header
    when there is one ("____\\nFrom: ..."), else at the header."""
    above_end = start if text.startswith("\n", start) else start - 1  # the line break that ends the line above
    if above_end < 0:
        return start
    above_start = text.rfind("\n", 0, above_end) + 1
    if above_end - above_start >= _SEPARATOR_MIN and not text[above_start:above_end].strip(_SEPARATOR_CHARS):
        return above_start
    return start


def _clean(section: str, *, header_end: int) -> str:
    """The section without its leading header (its first ``header_end`` characters), its
    signature, its disclaimers and a trailing block of ">"-quoted lines."""
    end = len(section)
    signature = patterns.SIGNATURE.search(section)
    if signature is not None:
        end = signature.start()
        while end < len(section) and section[end] == "\n":  # a match that begins with line breaks
            end += 1
    body = section[header_end:end] if end > header_end else ""
    if "mail" in body.lower():  # every disclaimer mentions mail
        body = _without_disclaimers(body)
    return _without_trailing_quote(body.strip())


def _without_disclaimers(body: str) -> str:
    pieces = []
    kept = 0
    for match in patterns.DISCLAIMER.finditer(body):
        start, end = match.span()
        opening = body[start]
        if opening in _SENTENCE_END:  # the full stop of the sentence before stays, the space after it goes
            pieces.append(body[kept : start + 1])
        else:
            if opening in "\n\r":  # the line break before it stays
                start += 1
            while start < end and body[start].isspace():
                start += 1
            pieces.append(body[kept:start])
        while end > start and body[end - 1].isspace():
            end -= 1
        kept = end
    if not pieces:
        return body
    pieces.append(body[kept:])
    return "".join(pieces)


def _without_trailing_quote(body: str) -> str:
    """Without the block of ">"-quoted (and blank) lines that ends the (stripped) body, when
    something unquoted comes before it: the quoted message of a reply whose header is missing."""
    line_start = body.rfind("\n") + 1
    if not body.startswith(">", line_start):
        return body
    cut = line_start
    line_end = line_start - 1  # the line break before the last line
    while line_end >= 0:
        line_start = body.rfind("\n", 0, line_end) + 1
        if body.startswith(">", line_start):
            cut = line_start
        elif line_start < line_end:  # an unquoted line: what comes after it is the quote
            return body[:cut].rstrip()
        line_end = line_start - 1
    return body  # nothing but quotes: kept
