"""reply_text: what it keeps and what it removes, one rule at a time.

The comparison with mail-parser-reply is in test_reply_oracle.py, hostile input in
test_reply_fuzz.py.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import re2

from conduit.mail import reply_patterns
from conduit.mail.reply import SCAN_CHARS, normalize, reply_text

REPLY = "Sounds good, see you then."

HEADERS = {
    "en": "On Mon, 3 Mar 2025 at 10:00, Bob <bob@example.com> wrote:",
    "en-outlook-web": "On Monday, March 3, 2025 10:00 AM, Bob <bob@example.com> wrote:",
    "de": "Am 03.03.2025 um 10:00 schrieb Bob <bob@example.com>:",
    "cs": "Dne po 3. 3. 2025 10:00 Bob <bob@example.com> napsal(a):",
    "da": "Den 3. mar. 2025 kl. 10.00 skrev Bob <bob@example.com>:",
    "es": "El lun, 3 mar 2025 a las 10:00, Bob (<bob@example.com>) escribió:",
    "fr": "Le lun. 3 mars 2025 à 10:00, Bob <bob@example.com> a écrit :",
    "it": "Il giorno lun 3 mar 2025 alle ore 10:00 Bob <bob@example.com> ha scritto:",
    "ja": "2025年3月3日(月) 10:00 Bob <bob@example.com>:",
    "ko": "2025년 3월 3일 (월) 오전 10:00, Bob <bob@example.com>님이 작성하였습니다:",
    "nl": "Op ma 3 mrt 2025 om 10:00 schreef Bob <bob@example.com>:",
    "pl": "Dnia 3.03.2025 o 10:00 Bob <bob@example.com> napisał(a):",
    "sv": "Den mån 3 mars 2025 kl 10:00 skrev Bob <bob@example.com>:",
    "zh": "2025年3月3日 10:00 Bob <bob@example.com> 写道：",
    "outlook-en": "From: Bob <bob@example.com>\nSent: Monday, March 3, 2025 10:00 AM\nTo: Alice\nSubject: Plans",
    "outlook-starred": "*From:* Bob <bob@example.com>\n*Sent:* Monday\n*To:* Alice",
    "outlook-de": "Von: Bob\nGesendet: Montag, 3. März 2025 10:00\nAn: Alice\nBetreff: Pläne",
    "outlook-fr": "De : Bob\nEnvoyé : lundi 3 mars 2025 10:00\nÀ : Alice\nObjet : Plans",
    "outlook-da": "-----Oprindelig meddelelse-----\nFra: Bob\nSendt: mandag\nTil: Alice",
    "outlook-zh": "发件人: Bob\n发送时间: 2025年3月3日 10:00\n收件人: Alice\n主题: Plans",
    "original-message": "-----Original Message-----",
    "gmail-forward": ("---------- Forwarded message ---------\nFrom: Bob <bob@example.com>\nDate: Mon, 3 Mar 2025\n"
                      "Subject: x"),
}


@pytest.mark.parametrize("header", HEADERS.values(), ids=HEADERS.keys())
def test_the_quoted_history_begins_at_a_header(header):
    text = f"{REPLY}\n\n{header}\n> Shall we meet on Friday?\n> Bob\n"
    assert reply_text(text) == (REPLY, True)
    assert reply_text(text.replace("\n", "\r\n")) == (REPLY, True)


@pytest.mark.parametrize("header", [
    "On Mon, 1 Jan 2024 at 10:00, A Person <a@b.c>\nwrote:",
    "On Mon, 1 Jan 2024 at 10:00, A\nPerson <a@b.c>\nwrote:",
    "On Mon, 1 Jan 2024 at 10:00,\nA Person <a@b.c> wrote:",
    "> On Mon, 1 Jan 2024 at 10:00, A Person <a@b.c>\n> wrote:",
    "Am 01.01.2024 um 10:00 schrieb A Person\n<a@b.c>:",
    "Le lun. 1 janv. 2024 à 10:00, A Person <a@b.c> a\nécrit :",
    "El lun, 1 ene 2024 a las 10:00, A Person (<a@b.c>)\nescribió:",
], ids=["2-lines", "3-lines", "break-before-name", "quoted", "de", "fr", "es"])
def test_a_header_wrapped_over_lines_is_found(header):
    assert reply_text(f"{REPLY}\n\n{header}\n> quoted\n")[0] == REPLY


def test_a_line_beginning_with_its_lead_word_twice_is_no_header():
    """"On On ..." is text; a stray "On" line above a header stays with the reply."""
    assert reply_text("On On Monday, Bob wrote:\nmore")[0] == "On On Monday, Bob wrote:\nmore"
    assert reply_text(f"{REPLY}\nOn\nOn Mon, Bob wrote:\n> x")[0] == f"{REPLY}\nOn"


def test_text_that_merely_mentions_headers_is_kept():
    text = "On Monday I wrote a letter.\nFrom: the office\nThe original message was short."
    assert reply_text(text) == (text, True)


def test_an_outlook_separator_above_the_header_goes_with_the_history():
    separator = "_" * 40
    assert reply_text(f"{REPLY}\n{separator}\nFrom: Bob\nSent: Monday\nTo: Alice\n\nold")[0] == REPLY
    assert reply_text(f"{REPLY}\n\n{separator}\nFrom: Bob\nSent: Monday\nTo: Alice\n\nold")[0] == REPLY


def test_a_forward_gives_what_the_header_introduces():
    """Nothing above the first header: the text between it and the next header."""
    text = "---------- Forwarded message ---------\nFrom: Bob\nDate: Mon\nSubject: x\nTo: Alice\n\nThe content.\n"
    assert reply_text(text)[0] == "The content."
    text = "On Mon, Bob wrote:\nFirst.\n\nOn Sun, Carol wrote:\nOlder."
    assert reply_text(text)[0] == "First."


@pytest.mark.parametrize("signature", [
    "-- \nAlice\nACME Corp", "--\nAlice", "__\nAlice", "Best regards,\nAlice", "Kind regards\nAlice",
    "Thanks,\nAlice", "Sent from my iPhone", "Get Outlook for iOS<https://aka.ms/o0ukef>",
    "Gesendet von meinem iPhone", "Mit freundlichen Grüßen\nAnna", "Viele Grüße\nAnna", "Med venlig hilsen\nPeter",
    "Tak for hjælpen\nPeter", "Cordialement,\nMarie", "Met vriendelijke groet,\nJan", "Pozdrawiam\nJan",
    "Vänliga hälsningar\nAnna", "/Anna", "> --\n> Bob", "敬礼，\n李",
])
def test_the_signature_is_removed(signature):
    assert reply_text(f"{REPLY}\n\n{signature}\n")[0] == REPLY


@pytest.mark.parametrize("text", [
    "Take care of the dog.\nKhaled will call.\nBestellung folgt.",  # "Tak", "Kh", "Best" begin words here
    "Run this:\n/usr/local/bin/backup --all\nthen tell me.",  # a path, not a "/Name" sign-off
    "Plan:\n- one\n- two\n-- not a delimiter\nend - of line",  # lists and dashes in text
    "Thanks, that helps.",  # a closing on the first line is the reply itself
])
def test_text_that_looks_like_a_signature_is_kept(text):
    assert reply_text(text) == (text, True)


@pytest.mark.parametrize(("text", "expected"), [
    ("Please see below.\nDisclaimer: This e-mail is confidential and meant for the addressee.", "Please see below."),
    ("Text.\nCAUTION: This email originated from outside of the organization. Do not click links.\n", "Text."),
    ("Hello.  Disclaimer: the content of this e-mail is confidential.\nBye", "Hello.\nBye"),
    ("Hallo.\nHinweis: Diese E-Mail ist vertraulich.\nMehr Text", "Hallo.\n\nMehr Text"),
    ("Done.\n\n-- \nBob\nCAUTION: This email originated outside.", "Done."),
])
def test_disclaimers_are_removed_and_the_sentence_before_keeps_its_full_stop(text, expected):
    assert reply_text(text)[0] == expected


def test_a_warning_that_is_not_about_mail_is_kept():
    text = "Warning: the bridge is closed.\nTake the ferry."
    assert reply_text(text) == (text, True)


@pytest.mark.parametrize(("text", "expected"), [
    ("Thanks!\n\n> Can you send the file?\n> Bob\n", "Thanks!"),
    ("Thanks!\n>> older\n>\n> newer\n\n", "Thanks!"),
    ("> question one\nanswer one\n> question two\nanswer two",
     "> question one\nanswer one\n> question two\nanswer two"),
    ("> only\n> quoted", "> only\n> quoted"),
])
def test_a_trailing_quote_without_header_is_history(text, expected):
    assert reply_text(text)[0] == expected


def test_positions_are_characters_in_non_ascii_text():
    text = "Grüße aus Köln, 東京 も\n\nOn Mon, 3 Mar 2025, Bob <bob@example.com> wrote:\n> ü\n"
    assert reply_text(text)[0] == "Grüße aus Köln, 東京 も"
    assert reply_text("ü\nOn On x wrote:\nOn Mon, Bob wrote:\n> x")[0] == "ü\nOn On x wrote:"


def test_lone_surrogates_do_not_break_it():
    assert reply_text("a\ud800b\n\nOn Mon, Bob wrote:\n> x") == ("a\ufffdb", True)


def test_empty_and_missing_text():
    assert reply_text(None) == (None, True)
    assert reply_text("") == ("", True)
    assert reply_text("  \n\n ") == ("", True)


def test_long_text_is_read_from_the_top():
    """History found near the top cuts the text; without it the whole text is kept rather than
    a reply cut off at the scanned part."""
    history = "\n\nOn Mon, Bob wrote:\n" + "> old line\n" * 5000
    assert reply_text("New text." + history)[0] == "New text."
    long_text = "plain line\n" * (SCAN_CHARS // 5)
    assert reply_text(long_text) == (long_text, True)
    assert reply_text(long_text + "-- \nBob") == (long_text + "-- \nBob", True)


def test_normalize_strips_lines_and_shortens_blank_runs():
    assert normalize(" a \r\n\t b\t\r\n\r\n\r\n\r\nc\n") == "a\nb\n\nc\n"
    assert normalize("\n\n\n\nx") == "\n\nx"
    assert normalize("x\n\n" + "_" * 40 + "\ny") == "x\n\ny"


def test_the_whitespace_class_is_pythons():
    """Lines are stripped by str.strip; the patterns' whitespace must be the same set."""
    everything = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    found = set(re2.compile(reply_patterns.S).findall(everything))
    assert found == {c for c in everything if c.isspace()}


@pytest.mark.parametrize("module", ["reply.py", "reply_patterns.py", "html_text.py", "parse.py"])
def test_no_private_modules_or_names_are_imported(module):
    tree = ast.parse((Path(__file__).parents[2] / "conduit" / "mail" / module).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            assert not any(part.startswith("_") for part in name.split(".")), name
