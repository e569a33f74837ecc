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
from collections.abc import Iterator
from typing import Any

from mailparser_reply.constants import MAIL_LANGUAGES
from mailparser_reply.parser import EmailMessage

SCAN_CHARS = 32 * 1024  # the quoted-history finder only reads the top of the text
LANGUAGES = [lang for lang in MAIL_LANGUAGES if lang != "david"]  # "david" is a mail product
_BLANK_RUNS = re.compile(r"\n(?:[^\S\n]*\n){2,}")  # mail-parser-reply is quadratic on blank-line runs
_NEWLINE = re.compile("\n")
_WHITESPACE_TO_LINE = re.compile(r"\s*\n")  # finditer: the first whitespace of each run holding a line break
WHITESPACE_TO_LINE = "\\s^"  # a start-set member: see _first_of

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
    if op in (sre.ASSERT, sre.ASSERT_NOT):
        return set(), True  # a lookaround consumes nothing
    return None, False


def _is_optional_whitespace(op: Any, arg: Any) -> bool:
    """A ``\\s*``."""
    return (op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and arg[0] == 0 and len(arg[2]) == 1
            and arg[2][0][0] is sre.IN and list(arg[2][0][1]) == [(sre.CATEGORY, sre.CATEGORY_SPACE)])


def _first_of(items: Any) -> tuple[set[str] | None, bool]:
    chars: set[str] = set()
    items = list(items)
    for at, (op, arg) in enumerate(items):
        if _is_optional_whitespace(op, arg) and at + 1 < len(items) and items[at + 1] == (sre.AT, sre.AT_BEGINNING):
            # "\s*^": begins where a run of whitespace reaching a line start begins, or at a line start.
            chars |= {WHITESPACE_TO_LINE, "^"}
            return chars, False
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


class _FastSearch:
    """``findall`` and ``search`` of one of the library's patterns, with its matches, looking
    only where a match is possible. With ``tuples``, findall gives every match as the tuple of
    its captured groups (how the library reads the header search) and alternatives whose needed
    character is absent are left out."""

    def __init__(self, regex: re.Pattern[str], *, tuples: bool = False) -> None:
        self.pattern, self.flags, self.tuples = regex.pattern, regex.flags, tuples
        self.alternatives = split_alternatives(regex.pattern) if tuples else [regex.pattern]
        self.needed = [needed_chars(alt, regex.flags) if tuples else None for alt in self.alternatives]

    def findall(self, text: str) -> list[Any]:
        return [self._shape(match) for match in self._matches(text)]

    def search(self, text: str) -> re.Match[str] | None:
        return next(self._matches(text), None)

    def _matches(self, text: str) -> Iterator[re.Match[str]]:
        present = set(text) if self.tuples else set()
        usable = tuple(i for i, needed in enumerate(self.needed) if needed is None or needed & present)
        if not usable:
            return
        regex, starts = self._compiled(usable)
        if starts is None:
            yield from regex.finditer(text)
            return
        resume = 0
        for start in _positions(text, starts, self.flags):
            if start < resume:
                continue
            match = regex.match(text, start)
            if match is not None:
                yield match
                resume = match.end() if match.end() > start else start + 1

    def _shape(self, match: re.Match[str]) -> Any:
        groups = match.re.groups
        if self.tuples or groups > 1:
            return tuple(group or "" for group in match.groups())
        return match.group(groups) or ""

    @functools.lru_cache(maxsize=64)  # noqa: B019 - a few instances per process, kept for its life
    def _compiled(self, usable: tuple[int, ...]) -> tuple[re.Pattern[str], set[str] | None]:
        pattern = "|".join(self.alternatives[i] for i in usable)
        return re.compile(pattern, self.flags), start_set(pattern, self.flags)


def _positions(text: str, starts: set[str], flags: int) -> list[int]:
    chars = frozenset(starts - {"^", WHITESPACE_TO_LINE})
    positions = {m.start() for m in _char_class(chars, flags & re.IGNORECASE).finditer(text)}
    if "^" in starts:
        positions.add(0)
        positions.update(m.end() for m in _NEWLINE.finditer(text))
    if WHITESPACE_TO_LINE in starts:
        positions.update(m.start() for m in _WHITESPACE_TO_LINE.finditer(text))
    return sorted(positions)


@functools.lru_cache(maxsize=64)
def _char_class(chars: frozenset[str], flags: int) -> re.Pattern[str]:
    return re.compile("[" + "".join(re.escape(c) for c in sorted(chars)) + "]" if chars else "(?!)", flags)


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


_LIBRARY = EmailMessage(text="", languages=list(LANGUAGES), keep_hyphen_lists=True)
_LIBRARY_HEADERS = _LIBRARY.HEADER_REGEX
_HEADERS = _FastSearch(_LIBRARY_HEADERS, tuples=True) if _splits_cleanly(_LIBRARY_HEADERS) else None
_SIGNATURES = _FastSearch(_LIBRARY.SIGNATURE_REGEX)
_DISCLAIMERS = _FastSearch(_LIBRARY.DISCLAIMERS_REGEX)


def _fast(regex: re.Pattern[str], search: _FastSearch | None) -> Any:
    """Our search for the library's pattern, if it is the one it was built for."""
    if search is not None and regex.pattern == search.pattern and regex.flags == search.flags:
        return search
    return regex


class _ReplyParser(EmailMessage):
    @property
    def HEADER_REGEX(self) -> Any:  # noqa: N802 - the library's names
        return _fast(super().HEADER_REGEX, _HEADERS)

    @property
    def SIGNATURE_REGEX(self) -> Any:  # noqa: N802
        return _fast(super().SIGNATURE_REGEX, _SIGNATURES)

    @property
    def DISCLAIMERS_REGEX(self) -> Any:  # noqa: N802
        return _fast(super().DISCLAIMERS_REGEX, _DISCLAIMERS)


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
