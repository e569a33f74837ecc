"""reply_text's header search finds exactly what mail-parser-reply's own findall finds."""

from __future__ import annotations

import random
import re
from itertools import chain

import pytest
from mailparser_reply.parser import EmailMessage

from conduit.mail import reply

HEADERS = [
    "On Mon, 3 Mar 2025 at 10:00, Bob <bob@example.com> wrote:",
    "> On Tue, Bob wrote:",
    "On Mon, 3 Mar 2025, Bob\n<bob@example.com> wrote:",
    "Am 03.03.2025 um 10:00 schrieb Bob <bob@example.com>:",
    "Le lun. 3 mars 2025 à 10:00, Bob <bob@example.com> a écrit :",
    "El lun, 3 mar 2025 a las 10:00, Bob (<bob@example.com>) escribió:",
    "2025年3月3日 10:00 Bob <bob@example.com> 写道：",
    "From: Bob <bob@example.com>\nSent: Monday\nTo: Alice\nSubject: Plans",
    "*From:* Bob\n*Sent:* Monday\n*To:* Alice",
    "Von: Bob\nGesendet: Montag\nAn: Alice\nBetreff: Pläne",
    "-----Original Message-----",
    "---------- Forwarded message ---------\nFrom: Bob <bob@example.com>\nDate: Mon\nSubject: x",
    "-----Oprindelig meddelelse-----\nFra: Bob\nSendt: mandag\nTil: Alice",
]

BODIES = [
    "Sounds good.\n\n{header}\n> earlier text\n> more\n",
    "Top line\n{header}\n\nquoted\n\n{header}\nolder\n",
    "  indented reply\r\n{header}\r\n> quoted\r\n",
    "{header}\nonly history",
    "no newline at end {header}",
    "Signature test\n\n--\nBob\n\n{header}\n> x",
    "Mid-line separator {header}\nmore",
]

SIGNED = [
    "Thanks for the update.\n\nBest regards,\nBob\n",
    "See you.\n   \n  \n-- \nBob\nexample.com\n",
    "See you.\n\n--\nBob\n",
    "Quick note\n\nSent from my iPhone",
    "Reply text\n\n   Gesendet von meinem Telefon\n",
    "Reply\n\n________________________________\nFrom: Bob\nSent: Monday\n",
    "Text.\nCAUTION: This email originated from outside of the organization. Do not click links in this mail.\n",
    "Hello.  Disclaimer: the content of this e-mail is confidential.\nMit freundlichen Grüßen\nAnna",
    "Best regards at the start is not a signature\nbut this line is text\n\nKind Regards\nBob",
    "  \t \n\n  Thanks,\n Bob",
]

PLAIN = [
    "La de da de da 1.\nLa de da de da 2.\n" * 100,  # what smtp-source sends: no ":" at all
    "A plain note with a time, 10:00, and a link https://example.com/a-b\n" * 20,
    "Only dashes -- here - and there\n" * 10,
]


def _texts() -> list[str]:
    return [body.format(header=header) for body in BODIES for header in HEADERS] + SIGNED + PLAIN


def _library(text: str) -> EmailMessage:
    return EmailMessage(text=text, languages=list(reply.LANGUAGES), keep_hyphen_lists=True)


def test_the_header_pattern_is_understood():
    """Otherwise reply.py hands the library its own slow search (still correct, not faster)."""
    assert reply._HEADERS is not None
    assert all(needed and not any(c.isalnum() for c in needed) for needed in reply._HEADERS.needed)
    assert reply.start_set(reply._LIBRARY_HEADERS.pattern, reply._LIBRARY_HEADERS.flags) == {"^", "\n", "-"}
    signatures = reply._LIBRARY.SIGNATURE_REGEX
    assert reply.start_set(signatures.pattern, signatures.flags) == {"^", "\n", reply.WHITESPACE_TO_LINE}
    disclaimers = reply._LIBRARY.DISCLAIMERS_REGEX
    assert reply.start_set(disclaimers.pattern, disclaimers.flags) == {"^", "\n", "\r", ".", "!", "?"}


@pytest.mark.parametrize("text", _texts())
def test_header_search_captures_what_findall_captures(text):
    """The library reads findall's captured groups flattened, in order, empty ones left out."""
    message = _library(text)
    expected = [g for g in chain.from_iterable(message.HEADER_REGEX.findall(message.text)) if g]
    found = [g for g in chain.from_iterable(reply._HEADERS.findall(message.text)) if g]
    assert found == expected


@pytest.mark.parametrize("text", _texts())
def test_signature_and_disclaimer_searches_find_what_the_library_finds(text):
    message = _library(text)
    expected = message.SIGNATURE_REGEX.search(message.text)
    found = reply._SIGNATURES.search(message.text)
    assert (found and found.span()) == (expected and expected.span())
    assert reply._DISCLAIMERS.findall(message.text) == message.DISCLAIMERS_REGEX.findall(message.text)


@pytest.mark.parametrize("text", _texts())
def test_reply_text_is_what_the_library_gives(text):
    expected = _library(text).read().replies
    result, extracted = reply.reply_text(text)
    assert extracted
    assert result == (expected[0].body if expected else text)


def test_start_set_of_small_patterns():
    assert reply.start_set(r"^ab|(?:x)?-c", re.M) == {"^", "x", "-"}
    assert reply.start_set(r"\s*^--|(?<!\A)^x", re.M) == {"^", reply.WHITESPACE_TO_LINE}
    assert reply.start_set(r"(?!no)[ab]+c", 0) == {"a", "b"}
    assert reply.start_set(r"\w+", 0) is None
    assert reply.start_set(r"a?", 0) is None  # may match empty anywhere


def test_needed_chars_of_small_patterns():
    assert reply.needed_chars(r"On .* wrote:", 0) == {":"}
    assert reply.needed_chars(r"a(?:-|:)b", 0) == {"-", ":"}
    assert reply.needed_chars(r"x?:?", 0) is None  # nothing is needed
    assert reply.needed_chars(r"abc", 0) is None  # letters only: not used


def test_split_alternatives_respects_groups_classes_and_escapes():
    assert reply.split_alternatives(r"a(b|c)|[|]\||d") == ["a(b|c)", r"[|]\|", "d"]


# -- clues: a search is skipped only when it cannot find anything ------------------------------

_PIECES = [
    "\n", "\r\n", "\n\n", " ", "\t", "> ", ">", "-", "--", "_", "_" * 32, "-" * 34, "-----", "Original Message",
    "On Mon, 3 Mar 2025, Bob <bob@example.com> wrote:", "wrote:", "From: Bob", "Sent: Monday", "To: Alice",
    "Subject: x", "*From:* a", "Von: a", "Gesendet: b", "Am 03.03.2025 um 10:00 schrieb Bob <b@example.com>:",
    "Best regards", "best regards,", "Thanks,", "Kind Regards", "Tak", "Kh", "Sent from my iPhone", "Gesendet von",
    "Get Outlook for iOS", "mail", "e-mail", "MAIL", "Disclaimer: ", "CAUTION: ", "Warning:", "this mail is private",
    "/abc", "2025年3月3日 10:00 Bob <b@example.com> 写道：", "免责声明：", "님이 작성하였습니다:", "감사합니다,", "Grüße",
    "Gruss", "Mit freundlichen Grüßen", "\u017f", "\u212a", "\u0131", "\u0130", "hello world", "XXXXXXXXXX", "1234",
    ".", "!", "?", ":", "\u00a0", "\u200b", "\u2028", "\r", "é", "Le lun. 3 mars 2025 à 10:00, Bob a écrit :",
]


_NEUTRAL = ["hello world", "XXXXXXXXXX", "1234", "\n", " ", "é", "Some text, and more.", "\r\n", "x-y"]


def _random_texts(count: int, seed: int, neutral: float) -> list[str]:
    """Texts made of the pieces above, a share of them plain text (so that some clues hold, some do not)."""
    rng = random.Random(seed)
    return ["".join(rng.choice(_NEUTRAL if rng.random() < neutral else _PIECES) for _ in range(rng.randint(1, 24)))
            for _ in range(count)]


RANDOM = _random_texts(1000, 11, 0.0) + _random_texts(1000, 12, 0.9)


def test_normalization_is_the_library_s():
    assert reply._NORMALIZES_LIKE_THE_LIBRARY  # else the library's own (slower) one is used
    for text in RANDOM + _texts():
        assert reply.normalize(text) == _library(text).text, text


def test_clues_hold_wherever_the_library_finds_something():
    for text in RANDOM + _texts():
        normalized = _library(text).text
        library = _library("")
        for regex, search in ((library.HEADER_REGEX, reply._HEADERS), (library.SIGNATURE_REGEX, reply._SIGNATURES),
                              (library.DISCLAIMERS_REGEX, reply._DISCLAIMERS)):
            if regex.search(normalized):
                assert search.possible(normalized), (regex.pattern[:40], text)


def test_random_texts_give_the_library_s_searches_and_reply():
    for text in RANDOM:
        message = _library(text)
        normalized = message.text
        expected = [g for g in chain.from_iterable(message.HEADER_REGEX.findall(normalized)) if g]
        assert [g for g in chain.from_iterable(reply._HEADERS.findall(normalized)) if g] == expected, text
        found, wanted = reply._SIGNATURES.search(normalized), message.SIGNATURE_REGEX.search(normalized)
        assert (found and found.span()) == (wanted and wanted.span()), text
        assert reply._DISCLAIMERS.findall(normalized) == message.DISCLAIMERS_REGEX.findall(normalized), text
        replies = _library(reply._BLANK_RUNS.sub("\n\n", text)).read().replies
        assert reply.reply_text(text) == ((replies[0].body if replies else text), True), text


def test_text_that_quotes_nothing_is_not_searched():
    """What smtp-source and most new mail look like: no clue of any of the three searches."""
    lines = "".join(f"{i % 10}" + "X" * 77 + "\r\n" for i in range(1, 52))
    normalized = reply.normalize(lines)
    assert not any(search.possible(normalized) for search in (reply._HEADERS, reply._SIGNATURES, reply._DISCLAIMERS))


def test_clues_of_small_patterns():
    assert reply.clues(r"On .* wrote:", 0) == [(reply.TEXT, frozenset({":"}))]
    assert reply.clues(r"(?m)^(?:> ?)*(?:Thanks|Best)", re.M) == [(reply.LINE, frozenset({">", "T", "B"}))]
    assert reply.clues(r"x(?:mail){1,2}", re.I) == [(reply.TEXT, frozenset({"mail"}))]
    assert reply.clues(r"\n[_-]{32,}", 0) == [(reply.TEXT, frozenset({"__", "_-", "-_", "--"}))]
    assert reply.clues(r"a|b:", 0) == [(reply.TEXT, frozenset({"a"})), (reply.TEXT, frozenset({":"}))]  # one a branch
    assert reply.clues(r"\w+", 0) is None
    assert reply.clues(r"(?i:x)y", 0) == [(reply.TEXT, frozenset({"y"}))]  # nothing read inside (?i:...)


def test_clue_check_is_case_insensitive_like_the_engine():
    check = reply._ClueCheck([(reply.TEXT, frozenset({"mail", "sk"}))], re.I)
    assert check.lowered is not None  # ASCII text: compared lowercased
    for text, found in [("E-MAIL", True), ("ma\u0131l", True), ("ma\u0130l", True), ("\u017fK", True),
                        ("s\u212a", True), ("nothing", False), ("m a i l", False)]:
        assert check(text) is found, text
        assert bool(re.search("mail|sk", text, re.I)) is found, text
