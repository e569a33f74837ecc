"""``reply_text``: the new part of a top-posted reply, found by mail-parser-reply.

The library finds quoted-history headers ("On … wrote:", "From: … Sent: …", in 13 languages)
with one large regular expression that Python's engine tries at every character of the text:
about 6 ms for 4 KiB, most of a delivery's CPU. Its branches can only begin at a line start or
at one of a few characters (a line break, "-"), so ``_StartSetSearch`` tries it only there: the
same matches as ``findall``, with a small fraction of the attempts. The set of start characters
is derived from the parsed pattern at import; should a library version add a branch that can
begin anywhere, the library's own ``findall`` is used unchanged.
"""

from __future__ import annotations

import re
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from mailparser_reply.constants import MAIL_LANGUAGES
from mailparser_reply.parser import EmailMessage

SCAN_CHARS = 32 * 1024  # the quoted-history finder only reads the top of the text
LANGUAGES = [lang for lang in MAIL_LANGUAGES if lang != "david"]  # "david" is a mail product
_BLANK_RUNS = re.compile(r"\n(?:[^\S\n]*\n){2,}")  # mail-parser-reply is quadratic on blank-line runs


_ANY = None  # a start set that is not a small set of characters: the full search is used


def _first(op: Any, arg: Any) -> tuple[set[str] | None, bool]:
    """The characters a match of one parsed element can begin with ("^": a line start), and
    whether the element can match without consuming anything."""
    if op is sre.AT:
        return ({"^"}, False) if arg in (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING) else (set(), True)
    if op is sre.LITERAL:
        return {chr(arg)}, False
    if op is sre.IN and all(kind is sre.LITERAL for kind, _ in arg):
        return {chr(code) for _, code in arg}, False
    if op is sre.SUBPATTERN:
        return _first_of(arg[3])
    if op is sre.BRANCH:
        chars: set[str] = set()
        nullable = False
        for branch in arg[1]:
            first, empty = _first_of(branch)
            if first is _ANY:
                return _ANY, False
            chars |= first
            nullable = nullable or empty
        return chars, nullable
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
        first, empty = _first_of(arg[2])
        return first, empty or arg[0] == 0
    if op in (sre.ASSERT, sre.ASSERT_NOT) and arg[0] == 1:
        return set(), True  # a lookahead consumes nothing
    return _ANY, False


def _first_of(items: Any) -> tuple[set[str] | None, bool]:
    chars: set[str] = set()
    for op, arg in items:
        first, empty = _first(op, arg)
        if first is _ANY:
            return _ANY, False
        chars |= first
        if not empty:
            return chars, False
    return chars, True


class _StartSetSearch:
    """``findall``, tried only where a match can begin: at line starts and at the few
    characters the pattern's branches can begin with. Same matches, same order."""

    def __init__(self, regex: re.Pattern[str], starts: set[str]) -> None:
        self.regex = regex
        self.line_starts = "^" in starts
        chars = "".join(re.escape(c) for c in sorted(starts - {"^"}))
        self.chars = re.compile(f"[{chars}]", regex.flags & re.IGNORECASE) if chars else None

    def findall(self, text: str) -> list[Any]:
        found: list[Any] = []
        resume = 0
        for start in self._positions(text):
            if start < resume:
                continue
            match = self.regex.match(text, start)
            if match is None:
                continue
            found.append(_as_findall(match, self.regex.groups))
            resume = match.end() if match.end() > start else start + 1
        return found

    def _positions(self, text: str) -> list[int]:
        positions = {m.start() for m in self.chars.finditer(text)} if self.chars else set()
        if self.line_starts:
            positions.add(0)
            positions.update(m.end() for m in _NEWLINE.finditer(text))
        return sorted(positions)


_NEWLINE = re.compile("\n")


def _as_findall(match: re.Match[str], groups: int) -> Any:
    if groups == 0:
        return match.group(0)
    if groups == 1:
        return match.group(1) or ""
    return tuple(group or "" for group in match.groups())


def start_set(regex: re.Pattern[str]) -> set[str] | None:
    """Where a match of ``regex`` can begin, or None when that is not a small set."""
    starts, can_be_empty = _first_of(sre_parse.parse(regex.pattern, regex.flags))
    return None if can_be_empty else starts


class _ReplyParser(EmailMessage):
    @property
    def HEADER_REGEX(self) -> Any:  # noqa: N802 - the library's name
        regex = super().HEADER_REGEX
        return _StartSetSearch(regex, _HEADER_STARTS) if _HEADER_STARTS is not None else regex


_HEADER_STARTS = start_set(EmailMessage(text="", languages=list(LANGUAGES)).HEADER_REGEX)


def reply_text(text: str | None) -> tuple[str | None, bool]:
    """The new part of a top-posted reply, and whether extraction worked.

    Only the top of the text is scanned (the library is slow on long input); when no quoted
    history shows up there, the whole text is kept rather than a cut-off piece of it.
    """
    if not text:
        return text, True
    sample = _BLANK_RUNS.sub("\n\n", text[:SCAN_CHARS])
    try:
        replies = _ReplyParser(text=sample, languages=list(LANGUAGES), keep_hyphen_lists=True).read().replies
    except Exception:  # noqa: BLE001 - a library failure keeps the whole text, with a warning
        return text, False
    if not replies or (len(replies) == 1 and len(text) > SCAN_CHARS):
        return text, True
    return replies[0].body, True
