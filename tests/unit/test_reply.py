"""reply_text's line-start search finds exactly what mail-parser-reply's own findall finds."""

from __future__ import annotations

import pytest
from mailparser_reply.parser import EmailMessage

from conduit.mail import reply

HEADERS = [
    "On Mon, 3 Mar 2025 at 10:00, Bob <bob@example.com> wrote:",
    "> On Tue, Bob wrote:",
    "Am 03.03.2025 um 10:00 schrieb Bob <bob@example.com>:",
    "Le lun. 3 mars 2025 à 10:00, Bob <bob@example.com> a écrit :",
    "El lun, 3 mar 2025 a las 10:00, Bob (<bob@example.com>) escribió:",
    "From: Bob <bob@example.com>\nSent: Monday\nTo: Alice\nSubject: Plans",
    "*From:* Bob\n*Sent:* Monday\n*To:* Alice",
    "Von: Bob\nGesendet: Montag\nAn: Alice\nBetreff: Pläne",
    "-----Original Message-----",
    "---------- Forwarded message ---------\nFrom: Bob <bob@example.com>\nDate: Mon\nSubject: x",
]

BODIES = [
    "Sounds good.\n\n{header}\n> earlier text\n> more\n",
    "Top line\n{header}\n\nquoted\n\n{header}\nolder\n",
    "  indented reply\r\n{header}\r\n> quoted\r\n",
    "{header}\nonly history",
    "no newline at end {header}",
    "Signature test\n\n--\nBob\n\n{header}\n> x",
    "Mid-line separator -----Oprindelig meddelelse-----\nFra: Bob\nSendt: mandag\nTil: Alice\n{header}",
]


def _texts() -> list[str]:
    return [body.format(header=header) for body in BODIES for header in HEADERS]


def test_the_library_pattern_can_only_begin_at_a_few_characters():
    """Line starts, line breaks and the "-" of separators; were it None, reply.py would use
    the library's own (slow) findall."""
    assert reply._HEADER_STARTS == {"^", "\n", "-"}


def test_start_set_of_small_patterns():
    import re
    assert reply.start_set(re.compile(r"^ab|(?:x)?-c", re.M)) == {"^", "x", "-"}
    assert reply.start_set(re.compile(r"(?!no)[ab]+c")) == {"a", "b"}
    assert reply.start_set(re.compile(r"\w+")) is None
    assert reply.start_set(re.compile(r"a?")) is None  # may match empty anywhere


@pytest.mark.parametrize("text", _texts())
def test_line_start_search_finds_what_findall_finds(text):
    message = EmailMessage(text=text, languages=list(reply.LANGUAGES), keep_hyphen_lists=True)
    regex = message.HEADER_REGEX
    assert reply._StartSetSearch(regex, reply._HEADER_STARTS).findall(message.text) == regex.findall(message.text)


@pytest.mark.parametrize("text", _texts())
def test_reply_text_is_what_the_library_gives(text):
    expected = EmailMessage(text=text, languages=list(reply.LANGUAGES), keep_hyphen_lists=True).read().replies
    result, extracted = reply.reply_text(text)
    assert extracted
    assert result == (expected[0].body if expected else text)
