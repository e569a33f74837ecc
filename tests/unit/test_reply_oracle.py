"""reply_text against mail-parser-reply, the library whose rules it follows (the test oracle).

The library is given the top ``SCAN_CHARS`` with runs of blank lines shortened (it is quadratic
on them), and a longer text without quoted history comes back whole, as with reply_text. Three
comparisons:

- the text/plain part of every message of the payload corpus: the same result, except for the
  cases listed in ``CORPUS_DIFFERENCES``, each for a reason given in ``DIFFERENCES``;
- texts generated from the building blocks of replies (reply lines, signatures, disclaimers,
  headers in the library's languages, quoted lines, blank lines, CRLF, stray whitespace): the
  same result, always;
- ``DIFFERENCES``: one text for each way reply_text differs on purpose, with what each gives
  (so a change of either shows here).
"""

from __future__ import annotations

import random
import re
from functools import cache

import pytest
from mailparser_reply.constants import MAIL_LANGUAGES
from mailparser_reply.parser import EmailMessage

from conduit.mail.reply import SCAN_CHARS, reply_text
from tests.unit import test_payload_corpus as corpus

LANGUAGES = [language for language in MAIL_LANGUAGES if language != "david"]  # "david" is a mail product
_BLANK_RUNS = re.compile(r"\n(?:[^\S\n]*\n){2,}")


def library_reply(text: str) -> str:
    sample = _BLANK_RUNS.sub("\n\n", text[:SCAN_CHARS])
    replies = EmailMessage(text=sample, languages=list(LANGUAGES), keep_hyphen_lists=True).read().replies
    if not replies or (len(replies) == 1 and len(text) > SCAN_CHARS):
        return text
    return replies[0].body


# -- deliberate differences -------------------------------------------------------------------

# (name, text, what the library gives, what reply_text gives, why)
DIFFERENCES = [
    ("spanish-header",
     "Sounds good.\n\nEl lun, 3 mar 2025 a las 10:00, Bob (<bob@example.com>) escribió:\n> earlier",
     "Sounds good.\n\nEl lun, 3 mar 2025 a las 10:00, Bob (<bob@example.com>) escribió:\n> earlier",
     "Sounds good.",
     ("the library's Spanish pattern excludes itself (its negative lookahead is the pattern) unless quoted "
     "with two spaces before 'escribió'")),
    ("chinese-header",
     "好的。\n\n2025年3月3日 10:00 Bob <bob@example.com> 写道：\n> earlier",
     "好的。\n\n2025年3月3日 10:00 Bob <bob@example.com> 写道：\n> earlier",
     "好的。",
     "the library's Chinese pattern excludes itself through its negative lookahead"),
    ("korean-header",
     "네.\n\n2025년 3월 3일 (월) 오전 10:00, Bob <bob@example.com>님이 작성하였습니다:\n> earlier",
     "네.\n\n2025년 3월 3일 (월) 오전 10:00, Bob <bob@example.com>님이 작성하였습니다:\n> earlier",
     "네.",
     "the library's Korean pattern excludes itself through its negative lookahead"),
    ("french-header-on-top",
     "Le lun. 3 mars 2025 à 10:00, Bob <bob@example.com> a écrit :\n> Bonjour",
     "Le",
     "> Bonjour",
     "the library's French pattern captures a second group, which it takes for a second header"),
    ("french-name-with-le",
     "Merci !\n\nLe lun. 3 mars 2025 à 10:00, Michelle Durand <m@example.com> a écrit :\n> Bonjour",
     "Merci !\n\nLe lun. 3 mars 2025 à 10:00, Michelle Durand <m@example.com> a écrit :\n> Bonjour",
     "Merci !",
     ("the library rejects a French header with 'le ' anywhere after its first word (MicheLLE Durand); "
     "reply_text rejects only a repeated lead word ('Le Le'), as for the other languages")),
    ("closing-must-end-a-word",
     "See you Friday.\nTake the train, it is faster.\nKhaled will join too.",
     "See you Friday.",
     "See you Friday.\nTake the train, it is faster.\nKhaled will join too.",
     "the library takes any line beginning with 'Tak' (Danish thanks) or 'Kh' for a signature"),
    ("path-is-no-sign-off",
     "Run this:\n/usr/local/bin/backup --all\nthen tell me.",
     "Run this:",
     "Run this:\n/usr/local/bin/backup --all\nthen tell me.",
     "the library takes any line beginning with '/word' for the Swedish '/Anna' sign-off"),
    ("disclaimer-keeps-the-full-stop-before",
     "Noted. Disclaimer: the content of this e-mail is confidential.",
     "Noted",
     "Noted.",
     "the library removes a disclaimer together with the punctuation that ends the sentence before it"),
    ("polish-single-field",
     "Results are in.\nData: 1, 2, 3\nMore tomorrow.",
     "Results are in.",
     "Results are in.\nData: 1, 2, 3\nMore tomorrow.",
     ("the library's Polish header block needs one field ('Data:', 'Do:', 'Od:' begin many lines); "
     "reply_text needs two, as for the other languages")),
    ("trailing-quote-is-history",
     "Thanks!\n\n> Can you send the file?\n> Bob",
     "Thanks!\n\n> Can you send the file?\n> Bob",
     "Thanks!",
     "the library removes '>' quotes only after a header line"),
    ("header-found-where-it-is",
     "As Bob put it: On Mon, Bob wrote:\nOn Mon, Bob wrote:\n> old",
     "As Bob put it:",
     "As Bob put it: On Mon, Bob wrote:",
     "the library looks for the header's text again with str.find and finds an earlier copy"),
    ("disclaimer-inside-signature",
     "Done.\n\n-- \nBob\nCAUTION: This email originated from outside of the organization.",
     "Done.\n\n--\nBob",
     "Done.",
     "the library removes the disclaimer first, after which it no longer finds the signature's text"),
    ("separator-above-header",
     "Ok for me.\n" + "_" * 40 + "\nFrom: Bob\nSent: Monday\nTo: Alice\n\nold",
     "Ok for me.\n" + "_" * 40,
     "Ok for me.",
     "Outlook's separator line directly above the header block belongs to the history"),
    ("signature-removed-once",
     "Thanks, Bob, for the Kind Regards you sent.\n\nKind Regards",
     "Thanks, Bob, for the  you sent.",
     "Thanks, Bob, for the Kind Regards you sent.",
     "the library removes every copy of the signature's text from the reply"),
    ("japanese-header-on-top",
     "2025年3月3日(月) 10:00 Bob <bob@example.com>:\n> こんにちは",
     ":\n> こんにちは",
     "> こんにちは",
     "the library's Japanese header leaves its final colon out"),
    ("forward-marker",
     ("FYI\n\n---------- Forwarded message ---------\nFrom: Bob <bob@example.com>\nDate: Mon, 3 Mar 2025\n"
     "Subject: Plans\nTo: Alice\n\nThe plans."),
     "FYI\n\n---------- Forwarded message ---------",
     "FYI",
     "Gmail's forward line is a separator like '-----Original Message-----'"),
    ("dutch-gmail-header",
     "Prima.\n\nOp ma 3 mrt 2025 om 10:00 schreef Bob <bob@example.com>:\n> Hallo",
     "Prima.\n\nOp ma 3 mrt 2025 om 10:00 schreef Bob <bob@example.com>:\n> Hallo",
     "Prima.",
     "Gmail writes the name after 'schreef'; the library expects it before"),
    ("forward-without-text-on-top",
     "-----Original Message-----\nFrom: Bob\nSent: Monday\nTo: Alice\nSubject: Plans\n\nThe plans.",
     "",
     "The plans.",
     "with nothing above the history, the first part with text after its header is the message"),
    ("dotless-i",
     "Merhaba.\nDısclaımer: thıs e-maıl ıs confıdentıal.",
     "Merhaba.",
     "Merhaba.\nDısclaımer: thıs e-maıl ıs confıdentıal.",
     "Python's re matches the Turkish dotless ı as i when ignoring case; RE2 follows Unicode case folding"),
]


@pytest.mark.parametrize(("text", "library_gives", "we_give"), [case[1:4] for case in DIFFERENCES],
                         ids=[case[0] for case in DIFFERENCES])
def test_deliberate_differences(text, library_gives, we_give):
    assert library_reply(text) == library_gives
    assert reply_text(text) == (we_give, True)


# -- the payload corpus -----------------------------------------------------------------------

CORPUS_DIFFERENCES = {
    "test_reply_005": "spanish-header", "test_reply_018": "spanish-header", "test_reply_031": "spanish-header",
    "test_reply_044": "spanish-header",
    "test_reply_006": "chinese-header", "test_reply_019": "chinese-header", "test_reply_032": "chinese-header",
    "test_reply_045": "chinese-header",
    "test_reply_011": "forward-marker", "test_reply_024": "forward-marker", "test_reply_037": "forward-marker",
    "test_reply_050": "forward-marker",
    "test_reply_043": "french-header-on-top",
    "test_reply_098": "disclaimer-keeps-the-full-stop-before",
    "real_outlook_reply": "disclaimer-inside-signature",
    "real_outlook_separator": "separator-above-header",
    "mutation_18": "path-is-no-sign-off",  # a line "/csv; charset=..." in a mangled MIME body
}


@cache
def _corpus_texts() -> dict[str, str]:
    """The text/plain part of each corpus message, as the payload has it."""
    texts = {}
    for name, make in corpus._cases().items():
        payload = corpus._built(make())
        if payload["text"] is not None and not payload["text_from_html"]:
            texts[name] = payload["text"]
    return texts


def test_the_listed_differences_are_explained():
    reasons = {case[0] for case in DIFFERENCES}
    assert set(CORPUS_DIFFERENCES.values()) <= reasons
    assert set(CORPUS_DIFFERENCES) <= set(_corpus_texts())


@pytest.mark.parametrize("name", sorted(corpus._cases()))
def test_corpus_text_gives_what_the_library_gives(name):
    text = _corpus_texts().get(name)
    if text is None:
        assert name not in CORPUS_DIFFERENCES
        return  # no text/plain part: nothing to compare
    ours, extracted = reply_text(text)
    assert extracted
    if name in CORPUS_DIFFERENCES:
        assert ours != library_reply(text), f"{name} now agrees: remove it from CORPUS_DIFFERENCES"
    else:
        assert ours == library_reply(text)


# -- generated replies ------------------------------------------------------------------------

REPLY_LINES = [
    "Sounds good, see you then.", "Thanks for the update, I will look at it tomorrow.", "Plan:", "- one", "- two",
    "Can we move the call to 3pm? The room is booked until then.", "The build at https://ci.example.com/42 is green.",
    "Der Termin am Freitag passt mir gut.", "Merci pour votre réponse rapide.", "Det lyder godt, vi ses.",
    "Grazie, a presto.", "Dziękuję za informację.", "Tack för hjälpen med rapporten.",
    "好的，明天见。", "네, 알겠습니다.",
    "Prices: 10 EUR, 20 EUR.", "I wrote the summary on Monday.", "1. first point", "2. second point", "ok",
    "Ünïcödé text — with dashes – and “quotes”.", "Best wishes to the team on the launch!",
]
DISCLAIMERS = [
    "CAUTION: This email originated from outside of the organization. Do not click links or open attachments.",
    "Disclaimer: This e-mail is confidential and meant for the addressee only.",
    "Confidential: this message is for the addressee only; if you received this mail in error, delete it.",
    "Hinweis: Diese E-Mail kann vertrauliche Informationen enthalten.",
]
SIGNATURES = [
    "-- \nBob", "--\nAlice Example\nACME Corp.", "__\nBob", "Best regards,\nBob", "Kind regards,\nAlice",
    "Thanks,\nBob", "Thank you,\nAlice", "All the best\nBob", "Sent from my iPhone", "Get Outlook for iOS",
    "Gesendet von meinem iPhone",
    "Mit freundlichen Grüßen\nAnna Schmidt", "Viele Grüße\nAnna", "Med venlig hilsen\nPeter", "Hilsen\nPeter",
    "Cordialement,\nMarie", "Cordiali saluti\nLuca", "Met vriendelijke groet,\nJan", "Pozdrawiam\nJan",
    "Vänliga hälsningar\nAnna", "Saludos,\nJuan", "Envoyé depuis mon iPhone", "Enviado desde mi iPhone",
    "Verzonden vanaf mijn iPhone", "Skickat från min iPhone", "此致，\n李", "감사합니다,\n김",
]
# Headers that may begin a text (the library handles them there as reply_text does) ...
HEADERS_ANYWHERE = [
    "On Mon, 3 Mar 2025 at 10:00, Bob <bob@example.com> wrote:",
    "On Mon, 3 Mar 2025 at 10:00, Bob <bob@example.com>\nwrote:",
    "On Mon, 3 Mar 2025 at 10:00, Bob\n<bob@example.com>\nwrote:",
    "> On Mon, 3 Mar 2025, Bob <bob@example.com> wrote:",
    "Am 03.03.2025 um 10:00 schrieb Bob <bob@example.com>:",
    "Dne po 3. 3. 2025 10:00 Bob <bob@example.com> napsal(a):",
    "Den 3. mar. 2025 kl. 10.00 skrev Bob <bob@example.com>:",
    "Il giorno lun 3 mar 2025 alle ore 10:00 Bob <bob@example.com> ha scritto:",
    "Op 3 mrt 2025, Bob <bob@example.com> schreef:",
    "Dnia 3.03.2025 o 10:00 Bob <bob@example.com> napisał(a):",
    "Den mån 3 mars 2025 kl 10:00 skrev Bob <bob@example.com>:",
    "From: Bob <bob@example.com>\nSent: Monday, March 3, 2025 10:00 AM\nTo: Alice\nSubject: Plans\n",
    "*From:* Bob <bob@example.com>\n*Sent:* Monday\n*To:* Alice\n",
    "Von: Bob\nGesendet: Montag\nAn: Alice\nBetreff: Pläne\n",
    "De : Bob\nEnvoyé : lundi\nÀ : Alice\nObjet : Plans\n",
    "-----Oprindelig meddelelse-----\nFra: Bob\nSendt: mandag\nTil: Alice\n",
    "发件人: Bob\n发送时间: 2025年3月3日\n收件人: Alice\n",
    "보낸 사람: Bob\n받는 사람: Alice\n",
]
# ... and headers that reply_text treats differently at the top (see DIFFERENCES).
HEADERS_BELOW_TEXT = [
    "Le lun. 3 mars 2025 à 10:00, Bob <bob@example.com> a écrit :",
    "2025年3月3日(月) 10:00 Bob <bob@example.com>:",
    "-----Original Message-----\nFrom: Bob\nSent: Monday\nTo: Alice\n",
    "\n" + "_" * 32 + "\nFrom: Bob\nSent: Monday\nTo: Alice\n",  # Outlook's separator after a blank line
]
QUOTED = ["> Shall we meet on Friday?", "> Bob", ">> older line", ">", "> - item", "> Best regards,"]
SPACES = ["", "", "", " ", "\t", "  ", "\xa0"]


def _generated(rng: random.Random) -> str:
    blocks: list[list[str]] = []
    top = rng.sample(REPLY_LINES, rng.randint(0, 4))
    if top:
        blocks.append(top)
    if top and rng.random() < 0.3:
        blocks.append([rng.choice(DISCLAIMERS)])
    if rng.random() < 0.5:
        blocks.append(rng.choice(SIGNATURES).split("\n"))
    for number in range(rng.choice([0, 1, 1, 2])):
        anywhere = not blocks and number == 0
        header = rng.choice(HEADERS_ANYWHERE if anywhere else HEADERS_ANYWHERE + HEADERS_BELOW_TEXT)
        blocks.append(header.split("\n") + rng.sample(QUOTED, rng.randint(1, 3)))
    lines: list[str] = []
    for block in blocks:
        lines += [rng.choice(SPACES)] * rng.choice([0, 1, 1, 2, 3]) if lines else []  # blank lines between blocks
        lines += [rng.choice(SPACES) + line + rng.choice(SPACES) for line in block]
    text = "\n".join(lines) + rng.choice(["", "\n", "\n\n"])
    return text.replace("\n", "\r\n") if rng.random() < 0.3 else text


GENERATED = [_generated(random.Random(seed)) for seed in range(1500)]


def test_generated_replies_give_what_the_library_gives():
    for text in GENERATED:
        assert reply_text(text) == (library_reply(text), True), text


def test_generated_replies_cover_the_rules():
    """The generator reaches what is compared: headers, signatures, disclaimers, forwards."""
    results = [reply_text(text)[0] for text in GENERATED]
    assert sum(result != text.strip() for result, text in zip(results, GENERATED, strict=True)) > 1000
    assert any("Disclaimer" in text and "Disclaimer" not in result for result, text in zip(results, GENERATED,
                                                                                               strict=True))
    assert any(text.lstrip().startswith(("On ", "From:", "Am ")) and result for result, text in zip(results, GENERATED,
                                                                                                     strict=True))
