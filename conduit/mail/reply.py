"""``reply_text``: the new part of a top-posted reply, found by mail-parser-reply.

The library finds quoted-history headers ("On … wrote:", "From: … Sent: …", in 13 languages)
with one regular expression of 27 alternatives that Python's engine tries at every character of
the text: about 6 ms for 4 KiB of prose and 17 ms for 4 KiB of short lines, most of a delivery's
CPU. ``_HeaderSearch`` gives the library exactly the matches its ``findall`` would, with far
less work, using two facts read from the parsed pattern (never hand-written, so a library
upgrade cannot make them wrong; where they cannot be derived, the plain search is used):

- each alternative needs a certain character somewhere in its match (":" for "wrote:" and
  "From:", "：" for Chinese, "-" for "-----Original Message-----"): alternatives whose
  character is not in the text cannot match and are left out;
- each alternative can only begin at a line start or at one of a few characters ("\\n", "-"):
  the search is tried only at those positions, not at every character.

Dropping alternatives that cannot match changes neither where matches are nor what they
capture; the library only reads the captured text, flattened in order.
"""

from __future__ import annotations

import functools
import re
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from mailparser_reply.constants import MAIL_LANGUAGES
from mailparser_reply.parser import EmailMessage

SCAN_CHARS = 32 * 1024  # the quoted-history finder only reads the top of the text
LANGUAGES = [lang for lang in MAIL_LANGUAGES if lang != "david"]  # "david" is a mail product
_BLANK_RUNS = re.compile(r"\n(?:[^\S\n]*\n){2,}")  # mail-parser-reply is quadratic on blank-line runs
_NEWLINE = re.compile("\n")

# -- what the parsed pattern says --------------------------------------------------------


def _first(op: Any, arg: Any) -> tuple[set[str] | None, bool]:
    """The characters a match of one parsed element can begin with ("^": a line start; None:
    too many to list), and whether the element can match without consuming anything."""
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
            if first is None:
                return None, False
            chars |= first
            nullable = nullable or empty
        return chars, nullable
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
        first, empty = _first_of(arg[2])
        return first, empty or arg[0] == 0
    if op in (sre.ASSERT, sre.ASSERT_NOT) and arg[0] == 1:
        return set(), True  # a lookahead consumes nothing
    return None, False


def _first_of(items: Any) -> tuple[set[str] | None, bool]:
    chars: set[str] = set()
    for op, arg in items:
        first, empty = _first(op, arg)
        if first is None:
            return None, False
        chars |= first
        if not empty:
            return chars, False
    return chars, True


def start_set(pattern: str, flags: int) -> set[str] | None:
    """Where a match can begin ("^": at a line start), or None when that is not a small set."""
    starts, can_be_empty = _first_of(sre_parse.parse(pattern, flags))
    return None if can_be_empty else starts


def _needed(op: Any, arg: Any) -> set[str] | None:
    """Characters of which every match of one element contains at least one (None: unknown)."""
    if op is sre.LITERAL:
        return {chr(arg)}
    if op is sre.IN and all(kind is sre.LITERAL for kind, _ in arg):
        return {chr(code) for _, code in arg}
    if op is sre.SUBPATTERN:
        return _needed_of(arg[3])
    if op is sre.BRANCH:
        chars: set[str] = set()
        for branch in arg[1]:
            needed = _needed_of(branch)
            if needed is None:
                return None
            chars |= needed
        return chars
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and arg[0] >= 1:
        return _needed_of(arg[2])
    return None


def _needed_of(items: Any) -> set[str] | None:
    """Of the elements every match goes through, the one needing the rarest characters
    (punctuation rather than letters, which are in every text)."""
    best = None
    for op, arg in items:
        needed = _needed(op, arg)
        if needed is not None and (best is None or _commonness(needed) <= _commonness(best)):
            best = needed
    return best


def _commonness(chars: set[str]) -> tuple[int, int]:
    return sum(10 if c.isalnum() or c.isspace() else 1 for c in chars), len(chars)


def needed_chars(pattern: str, flags: int) -> set[str] | None:
    """Characters of which every match contains one; None when no such set is known, or when it
    holds letters (case-insensitive matching would make "is it in the text" subtle)."""
    chars = _needed_of(sre_parse.parse(pattern, flags))
    return None if chars is None or any(c.isalpha() for c in chars) else chars


def split_alternatives(pattern: str) -> list[str]:
    """The pattern's top-level alternatives (split at "|" outside groups and classes)."""
    parts, depth, in_class, escaped, start = [], 0, False, False, 0
    for at, char in enumerate(pattern):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(pattern[start:at])
            start = at + 1
    parts.append(pattern[start:])
    return parts


# -- the search ---------------------------------------------------------------------------


class _HeaderSearch:
    """``findall`` of the library's header pattern, as tuples of captured text (as the library
    reads it), looking only where a match is possible."""

    def __init__(self, regex: re.Pattern[str]) -> None:
        self.pattern, self.flags = regex.pattern, regex.flags
        self.alternatives = split_alternatives(regex.pattern)
        self.needed = [needed_chars(alt, regex.flags) for alt in self.alternatives]

    def findall(self, text: str) -> list[tuple[str, ...]]:
        present = set(text)
        usable = tuple(i for i, needed in enumerate(self.needed) if needed is None or needed & present)
        if not usable:
            return []
        regex, starts = self._compiled(usable)
        if starts is None:
            return [_captured(match) for match in regex.finditer(text)]
        found: list[tuple[str, ...]] = []
        resume = 0
        for start in _positions(text, starts, self.flags):
            if start < resume:
                continue
            match = regex.match(text, start)
            if match is not None:
                found.append(_captured(match))
                resume = match.end() if match.end() > start else start + 1
        return found

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one instance per process, kept for its life
    def _compiled(self, usable: tuple[int, ...]) -> tuple[re.Pattern[str], set[str] | None]:
        pattern = "|".join(self.alternatives[i] for i in usable)
        return re.compile(pattern, self.flags), start_set(pattern, self.flags)


def _positions(text: str, starts: set[str], flags: int) -> list[int]:
    positions = {m.start() for m in _char_class(frozenset(starts - {"^"}), flags & re.IGNORECASE).finditer(text)}
    if "^" in starts:
        positions.add(0)
        positions.update(m.end() for m in _NEWLINE.finditer(text))
    return sorted(positions)


@functools.lru_cache(maxsize=64)
def _char_class(chars: frozenset[str], flags: int) -> re.Pattern[str]:
    return re.compile("[" + "".join(re.escape(c) for c in sorted(chars)) + "]" if chars else "(?!)", flags)


def _captured(match: re.Match[str]) -> tuple[str, ...]:
    return tuple(group or "" for group in match.groups())


def _splits_cleanly(regex: re.Pattern[str]) -> bool:
    """Whether ``split_alternatives`` finds exactly the branches the regex parser sees."""
    parsed = list(sre_parse.parse(regex.pattern, regex.flags))
    alternatives = split_alternatives(regex.pattern)
    if len(parsed) != 1 or parsed[0][0] is not sre.BRANCH or len(parsed[0][1][1]) != len(alternatives):
        return False
    try:
        return all(re.compile(alternative, regex.flags) for alternative in alternatives)
    except re.error:
        return False


_LIBRARY_HEADERS = EmailMessage(text="", languages=list(LANGUAGES)).HEADER_REGEX
_HEADERS = _HeaderSearch(_LIBRARY_HEADERS) if _splits_cleanly(_LIBRARY_HEADERS) else None


class _ReplyParser(EmailMessage):
    @property
    def HEADER_REGEX(self) -> Any:  # noqa: N802 - the library's name
        regex = super().HEADER_REGEX
        if _HEADERS is not None and regex.pattern == _HEADERS.pattern and regex.flags == _HEADERS.flags:
            return _HEADERS
        return regex


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
