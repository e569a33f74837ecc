"""``reply_text``: the new part of a top-posted reply, found by mail-parser-reply.

The library runs three searches over the text: quoted-history headers ("On … wrote:", "From: …
Sent: …", in 13 languages: one regular expression of 27 alternatives), signatures and
disclaimers. Python's engine tries each at every character: about 6 ms for 4 KiB of prose and
17 ms for 4 KiB of short lines, most of a delivery's CPU. ``_FastSearch`` gives the library
exactly the matches of its own searches, with far less work, using facts read from the parsed
patterns (never hand-written, so a library upgrade cannot make them wrong; where they cannot be
derived, the plain search is used):

- clues: what every match needs, checked in one cheap pass over the text: a character or string
  that must occur ("mail" in a disclaimer, "--" in a signature separator), or a line that must
  begin with one of a few characters (">", "B" of "Best regards", ...). When no clue holds,
  the search finds nothing and is not run: the usual case for mail that quotes nothing;
- each header alternative needs a certain character somewhere in its match (":" for "wrote:"
  and "From:", "：" for Chinese, "-" for "-----Original Message-----"): alternatives whose
  character is not in the text cannot match and are left out;
- each alternative can only begin at a line start or at one of a few characters ("\\n", "-"):
  the search is tried only at those positions, not at every character.

Dropping alternatives that cannot match changes neither where matches are nor what they
capture; the library only reads the captured text, flattened in order. The library's text
normalisation is also done here, skipping its Outlook-separator substitution (a scan of every
character) when no separator can be in the text; it is compared with the library's own at import.
"""

from __future__ import annotations

import functools
import re
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from collections.abc import Iterator
from typing import Any

from mailparser_reply.constants import MAIL_LANGUAGES, OUTLOOK_MAIL_SEPARATOR
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
        return _first_of(arg[3]) if not arg[1] and not arg[2] else (None, False)  # (?i:...) changes the flags
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
    return None if chars is None or any(c.isalpha() or not _literal(c, flags) for c in chars) else chars


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


# -- clues: what every match of a pattern needs ---------------------------------------------

TEXT, LINE = "text", "line"
# A clue: (TEXT, strings), one of which occurs in the text; or (LINE, characters), one of which
# begins a line. A pattern's clues: every match satisfies at least one of them.
Clue = tuple[str, frozenset[str]]


def clues(pattern: str, flags: int) -> list[Clue] | None:
    """Clues of which every match of the pattern satisfies one; None when none are known."""
    return _clues_of(sre_parse.parse(pattern, flags))


def _clues_of(items: Any) -> list[Clue] | None:
    """Every element a match must go through offers clues; the cheapest, most telling are kept."""
    items = list(items)
    options: list[list[Clue] | None] = []
    run = ""  # consecutive literal characters: a string every match contains
    for at, (op, arg) in enumerate(items):
        if op is sre.LITERAL:
            run += chr(arg)
            continue
        options += _run_options(run)
        run = ""
        if op is sre.AT and arg in (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING):
            first, empty = _first_of(items[at + 1 :])  # what the line must begin with
            if first and not empty and not first & {"^", WHITESPACE_TO_LINE}:
                options.append([(LINE, frozenset(first))])
        elif op is sre.IN and all(kind is sre.LITERAL for kind, _ in arg):
            options.append([(TEXT, frozenset(chr(code) for _, code in arg))])
        elif op is sre.SUBPATTERN and not arg[1] and not arg[2]:  # no inline flags
            options.append(_clues_of(arg[3]))
        elif op is sre.BRANCH:
            branches = [_clues_of(branch) for branch in arg[1]]
            if all(branch is not None for branch in branches):
                options.append([clue for branch in branches for clue in branch or ()])
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and arg[0] >= 1:
            options.append(_clues_of(arg[2]))
            body = list(arg[2])
            if arg[0] >= 2 and len(body) == 1 and body[0][0] is sre.IN and len(body[0][1]) <= 4 and all(
                    kind is sre.LITERAL for kind, _ in body[0][1]):  # "[_-]{32,}": two of them in a row
                chars = [chr(code) for _, code in body[0][1]]
                options.append([(TEXT, frozenset(a + b for a in chars for b in chars))])
    options += _run_options(run)
    return min((option for option in options if option), key=_rank, default=None)


def _run_options(run: str) -> list[list[Clue] | None]:
    return [[(TEXT, frozenset({run}))], *([(TEXT, frozenset({char}))] for char in set(run))] if run else []


def _common(char: str) -> bool:
    return char.isspace() or (char.isascii() and char.isalnum())


def _rank(option: list[Clue]) -> tuple[int, int, int]:
    """Cheap to check and rarely true first: punctuation that must occur or begin a line; then
    letters beginning a line; then strings with letters (a case-insensitive scan); last, what
    is in nearly every text (spaces, digits)."""
    tiers = []
    for kind, values in option:
        if kind is LINE:
            tiers.append(1 if any(map(_common, values)) else 0)
        elif any(all(map(_common, value)) and value == value.lower() == value.upper() for value in values):
            tiers.append(3)
        else:
            tiers.append(2 if any(value.lower() != value or value.upper() != value for value in values) else 0)
    shortest = min(2 if kind is LINE else min(map(len, values)) for kind, values in option)
    return max(tiers), -shortest, sum(len(values) for _, values in option)


def _literal(string: str, flags: int) -> bool:
    """Whether the pattern's characters match only themselves (no case-insensitive variants)."""
    return not flags & re.IGNORECASE or all(char.lower() == char == char.upper() for char in string)


@functools.lru_cache(maxsize=256)
def _folds_like_ascii(char: str, flags: int) -> bool:
    """Whether, of the ASCII characters, ``char`` in a pattern matches exactly itself in either case
    (then on ASCII text, ``lower() in lower()`` finds what the pattern finds)."""
    if not char.isascii():
        return False
    pattern = re.compile(re.escape(char), flags)
    return {c for c in map(chr, range(128)) if pattern.fullmatch(c)} == {char.lower(), char.upper()}


class _ClueCheck:
    """Whether any of a pattern's clues holds in a text: one cheap pass, exact for its flags."""

    def __init__(self, found: list[Clue], flags: int) -> None:
        flags &= ~re.VERBOSE  # the checks' own patterns are written plainly
        strings = {value for kind, values in found if kind is TEXT for value in values}
        self.plain = tuple(sorted(value for value in strings if _literal(value, flags)))
        cased = sorted(strings.difference(self.plain))
        self.cased = re.compile("|".join(map(re.escape, cased)), flags) if cased else None
        folds = all(_folds_like_ascii(char, flags) for value in cased for char in value)
        self.lowered = tuple(value.lower() for value in cased) if folds else None
        starts = frozenset(char for kind, values in found if kind is LINE for char in values)
        self.first = _char_class(starts, flags) if starts else None
        self.line_start = re.compile("\n" + self.first.pattern, flags) if self.first else None

    def __call__(self, text: str) -> bool:
        # "c in text" is a memchr; a longer string is only looked for once its first character is there.
        if any(value[0] in text and value in text for value in self.plain):
            return True
        if self.first is not None and (self.first.match(text) or self.line_start.search(text)):
            return True
        if self.cased is None:
            return False
        if self.lowered is not None and text.isascii():
            lowered = text.lower()
            return any(value in lowered for value in self.lowered)
        return self.cased.search(text) is not None


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
        self.needed_anywhere = frozenset().union(*(needed for needed in self.needed if needed))
        found = clues(regex.pattern, regex.flags)
        self.possible = _ClueCheck(found, regex.flags) if found else None

    def findall(self, text: str) -> list[Any]:
        return [self._shape(match) for match in self._matches(text)]

    def search(self, text: str) -> re.Match[str] | None:
        return next(self._matches(text), None)

    def _matches(self, text: str) -> Iterator[re.Match[str]]:
        if self.possible is not None and not self.possible(text):
            return
        present = {char for char in self.needed_anywhere if char in text}  # uncased: "in" is exact
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


# -- the library, with these searches -------------------------------------------------------

_OUTLOOK_SEPARATOR = re.compile(f"([^\n]){OUTLOOK_MAIL_SEPARATOR}")  # the library's, compiled once
_SEPARATOR_CLUES = clues(_OUTLOOK_SEPARATOR.pattern, 0)
_SEPARATOR_POSSIBLE = _ClueCheck(_SEPARATOR_CLUES, 0) if _SEPARATOR_CLUES else None


def normalize(text: str) -> str:
    """The library's ``EmailMessage._normalize_text``, without scanning for an Outlook separator
    that cannot be there."""
    text = text.replace("\r\n", "\n")
    text = "\n".join([line.strip() for line in text.split("\n")])
    if _SEPARATOR_POSSIBLE is None or _SEPARATOR_POSSIBLE(text):
        text = _OUTLOOK_SEPARATOR.sub("\\1\n", text, re.MULTILINE)  # sic: the library passes the flag as count
    return text


def _options() -> dict[str, Any]:
    """The library's options, the same for every message (and for ``_LIBRARY``, whose patterns
    ``_ReplyParser`` uses)."""
    return {"languages": list(LANGUAGES), "keep_hyphen_lists": True}


def _library(text: str) -> EmailMessage:
    return EmailMessage(text=text, **_options())


_NORMALIZATION_PROBES = [
    "", " a \r\n\tb\t\r\n\r\n", "x\n\n" + "_" * 40 + "\ny", "x\n\n -" + "-" * 31, "\u00a0a\u2003\n\x0b", "a\rb\r\n",
]
_NORMALIZES_LIKE_THE_LIBRARY = all(normalize(probe) == _library(probe).text for probe in _NORMALIZATION_PROBES)
_LIBRARY = _library("")
_LIBRARY_HEADERS = _LIBRARY.HEADER_REGEX
_HEADERS = _FastSearch(_LIBRARY_HEADERS, tuples=True) if _splits_cleanly(_LIBRARY_HEADERS) else None
_SIGNATURES = _FastSearch(_LIBRARY.SIGNATURE_REGEX)
_DISCLAIMERS = _FastSearch(_LIBRARY.DISCLAIMERS_REGEX)


class _ReplyParser(EmailMessage):
    """The library with the searches above; built only by ``_parser``, with the options of
    ``_LIBRARY``, so its patterns are ``_LIBRARY``'s (the library rebuilds them from 13
    languages for every message)."""

    def _normalize_text(self) -> None:
        if _NORMALIZES_LIKE_THE_LIBRARY:
            self.text = normalize(self.text)
        else:
            super()._normalize_text()

    @property
    def HEADER_REGEX(self) -> Any:  # noqa: N802 - the library's names
        return _HEADERS or _LIBRARY_HEADERS

    @property
    def SIGNATURE_REGEX(self) -> Any:  # noqa: N802
        return _SIGNATURES

    @property
    def DISCLAIMERS_REGEX(self) -> Any:  # noqa: N802
        return _DISCLAIMERS


def _parser(text: str) -> _ReplyParser:
    return _ReplyParser(text=text, **_options())


def reply_text(text: str | None) -> tuple[str | None, bool]:
    """The new part of a top-posted reply, and whether extraction worked.

    Only the top of the text is scanned (the library is slow on long input); when no quoted
    history shows up there, the whole text is kept rather than a cut-off piece of it.
    """
    if not text:
        return text, True
    sample = _BLANK_RUNS.sub("\n\n", text[:SCAN_CHARS])
    try:
        replies = _parser(sample).read().replies
    except Exception:  # noqa: BLE001 - a library failure keeps the whole text, with a warning
        return text, False
    if not replies or (len(replies) == 1 and len(text) > SCAN_CHARS):
        return text, True
    return replies[0].body, True
