"""The patterns ``reply_text`` looks for, in 13 languages, as RE2 regular expressions.

Why RE2: these patterns read text from anyone on the internet. A backtracking engine (Python's
``re``) can take time exponential or polynomial in the length of a line on patterns such as
"On .+? .+? wrote:"; RE2 runs in time linear in the text whatever the pattern.

The forms are those mail-parser-reply recognises (its test suite is the reference for them):
quoted-history headers ("On <date>, <name> wrote:", "Am ... schrieb ...:", Outlook's
"From: / Sent: / To:" blocks, "-----Original Message-----"), signatures ("-- ", "Best regards",
"Sent from my iPhone") and disclaimers ("CAUTION: ... e-mail ..."). Each header spans at most
four lines: the line breaks it may contain are counted in the pattern (``S`` below may be one),
so a wrapped header ("On Mon, 1 Jan 2024 at 10:00, A Person <a@b.c>\\nwrote:") is found and
every match is a bounded window of lines. ``tests/unit/test_reply_oracle.py`` compares the result
with the library's and lists where it differs on purpose.

Python's ``\\s``, ``\\w`` and ``\\d`` are Unicode-aware and RE2's are ASCII-only: the classes below
spell out the Unicode sets (``S`` is exactly ``str.isspace``, which ``str.strip`` also uses).
"""

from __future__ import annotations

import re2

# Every character for which str.isspace() is true (tests/unit/test_reply.py checks the set).
SPACE_CLASS = r"\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
S = f"[{SPACE_CLASS}]"
WORD_CLASS = r"\p{L}\p{N}_"
D = r"\p{Nd}"
QUOTE = "(?:> ?)*"  # quoting: "> ", ">> ", "> > "

# -- quoted-history headers -------------------------------------------------------------------

# "On <date>, <name> wrote:" and its translations, as one line or wrapped over up to four.
WROTE_HEADERS: dict[str, str] = {
    "en": f"On{S}.+?{S}?.+?{S}?wrote:",
    "de": f"Am{S}.+?{S}?schrieb{S}.+?{S}?.+?:",
    "cs": rf"Dne{S}.+?{S}?.+?{S}?napsal\(a\):",
    "da": f"(?:Den|Man|Tir|Ons|Tor|Fre|Lør|Søn|[0-9]).+?{S}skrev{S}.+?:",
    "es": f"El{S}.+?{S}?.+?{S}escribió:",
    "fr": f"Le{S}.+?(?:{S}?.+?)?{S}?a{S}écrit[a-zA-Z0-9.:;<>()&@ -]*:",
    "it": f"Il{S}.+?{S}?.+?{S}?ha scritto:",
    "ja": rf"{D}{{4}}年{D}{{1,2}}月{D}{{1,2}}日\(.\) {D}{{1,2}}:{D}{{2}}.+? <.+?>:",
    "ko": f"{D}{{4}}년 {D}{{1,2}}월 {D}{{1,2}}일 .*님이 작성하였습니다:",
    "nl": f"Op{S}.+?{S}?.+?{S}?schreef(?:{S}.+?)?:",  # Gmail names the writer after "schreef"
    "pl": rf"Dnia{S}.+?{S}?.+?{S}?(?:nadesłał|napisał\(a\)):",
    "sv": (f"(?:Den|Mån|Tis|Ons|Tor|Fre|Lör|Sön|[0-9]+{S}+(?:jan|feb|mar|apr|maj|jun|jul|aug|sep|okt|nov|dec))"
           f".*skrev{S}.+?{S}?.+?:"),
    "zh": f"{D}{{4}}年{D}{{1,2}}月{D}{{1,2}}日.*?写道：",
}

# A header line that begins with its lead word twice ("On On ...", "On\nOn Mon, ... wrote:") is
# no header: the header, if any, begins at the second one.
REPEATED_LEAD = re2.compile(
    "(?i)(?:"
    + "|".join(f"{word}[.{SPACE_CLASS}]*{word}" for word in ("On", "Am", "Dne", "Den", "Le", "Il", "Op", "Dnia"))
    + f"){S}")

# Outlook's header block: two or more consecutive "Field: value" lines of one language.
FIELD_NAMES: dict[str, str] = {
    "en": "From|Sent|To|Subject|Date|Cc|Organization",
    "de": "Von|Gesendet|An|Betreff|Datum|Cc|Organisation",
    "cs": "Od|Odesláno|Komu|Předmět|Datum|Kopie",
    "da": "Fra|Sendt|Til|Emne|Dato|Cc|Kopi|Vedhæftet",
    "es": "De|Enviado|Para|Asunto|Fecha|CC|Organización",
    "fr": "De |Envoyé |À |Objet |  |Cc ",  # French typography: "De : ..."
    "it": "Da|Inviato|A|Oggetto|Data|Cc",
    "ko": f"보낸{S}?사람|보낸{S}?날짜|받는{S}?사람|제목|참조",
    "nl": "Van|Verzonden|Aan|Onderwerp|Datum|Cc",
    "pl": "Od|Wysłano|Do|Temat|Data|DW",
    "sv": "Från|Skickat|Till|Ämne|Datum|Kopia",
    "zh": "发件人|发送时间|收件人|主题|抄送|组织",
}
_FIELD_START = f"(?:^|\\n|\\n{QUOTE})"
_DANISH_ORIGINAL = f"(?:{_FIELD_START}?-----Oprindelig meddelelse-----\\n)?"


def _field_block(names: str) -> str:
    field = f"{_FIELD_START}[* ]*(?:{names}):[ *]*{S}{{0,2}}.*"
    return f"(?:{field}){{2,}}(?:\\n.*)?"  # and the line after the block (often a wrapped value)


# Outlook's "-----Original Message-----" and Gmail's "---------- Forwarded message ---------".
SEPARATOR_TITLES = [
    "Original Message", "Forwarded message", "Ursprüngliche Nachricht", "Weitergeleitete Nachricht",
    "Message d'origine", "Message transféré", "Mensaje original", "Mensaje reenviado", "Messaggio originale",
    "Messaggio inoltrato", "Oorspronkelijk bericht", "Doorgestuurd bericht",
]
GENERIC_SEPARATOR = f"^-{{5,}} ?(?:{'|'.join(SEPARATOR_TITLES)}) ?-{{5,}}$"

_HEADER_ALTERNATIVES = (
    [f"^{QUOTE}(?:{pattern})$" for pattern in WROTE_HEADERS.values()]
    + [(_DANISH_ORIGINAL if language == "da" else "") + _field_block(names) for language, names in FIELD_NAMES.items()]
    + [GENERIC_SEPARATOR]
)
# One search for all of them: where several could begin at one place, the first listed wins.
HEADER = re2.compile("(?mi)" + "|".join(f"(?:{alternative})" for alternative in _HEADER_ALTERNATIVES))

# -- signatures ---------------------------------------------------------------------------------

SENT_FROM = [
    "Sent from my", "Get Outlook for", "Gesendet von", "Odesláno z mého.*", "Sendt fra min", "Sendt fra",
    "Hent Outlook til", "Sendt fra Outlook", "Enviado desde mi.*", "Envoyé depuis", "Inviato da", "내 .*에서 보냄",
    "Verzonden vanaf mijn", "Wysłano z", "Skickat från min", "从我的.*发送",
]
# Closing phrases that begin a signature when they begin a line (not the first): a phrase that
# ends in a letter must end a word ("Tak" is Danish for thanks, "Take care" is not).
CLOSINGS = [
    "Best regards", "Kind Regards", "Thanks,", "Thank you,", "Best,", "All the best", "regards,",
    "Mit freundlichen Grüßen", "Mit freundlichen Grüßen / (?:Best|Kind) regards,",
    "(?:(?:Beste(?:n)?|Liebe|Viele) )?(?:Gr(?:ü|ue)(?:ß|ss)(?:e)?|Gruß|Gruss)",
    "S pozdravem,", "S úctou,", "Děkuji,", "Děkujeme,", "S přáním hezkého dne,",
    "Med venlig hilsen", "Venlig hilsen", "Hilsen", "Mvh", "Dbh", "Bedste hilsner", "De bedste hilsner", "Kh", "Knus",
    "Tak", "På forhånd tak",
    "Saludos,", "Atentamente,", "Gracias,", "Un saludo,", "Cordialmente,", "Muchas gracias,",
    "cordialement", "salutations", "bonne r[ée]ception", "bonne journ[ée]e",
    "Cordiali saluti",
    "감사합니다,", "안부 전합니다,", "좋은 하루 되세요,", "고맙습니다,", "감사합니다.",
    "Met vriendelijke groet", "Hartelijke groeten", "Bedankt,", "Dank u,",
    "Z poważaniem", "Z powazaniem", "Pozdrawiam", "W przypadku niejasności, proszę o kontakt.",
    "Med vänliga hälsningar", "Vänliga hälsningar", "Hälsningar", "Bästa hälsningar",
    "此致，", "敬礼，", "谢谢，", "谢谢您的关注，", "祝好，",
]
_ENDS_IN_LETTER = [phrase for phrase in CLOSINGS if phrase[-1].isalpha() or phrase[-1] in ")?"]
_ENDS_IN_MARK = [phrase for phrase in CLOSINGS if phrase not in _ENDS_IN_LETTER]
_CLOSING = (f"(?:(?:{'|'.join(_ENDS_IN_LETTER)})(?:$|[^{WORD_CLASS}])|(?:{'|'.join(_ENDS_IN_MARK)})"
            f"|/[{WORD_CLASS}]+(?: [{WORD_CLASS}]+)?$)")  # the Swedish "/Anna" sign-off, alone on its line

# Where a signature begins: a "--" line (the "-- " delimiter, its space stripped) that is not the
# last line, a "Sent from my ..." line, or a closing phrase; or an Outlook separator (a line of
# 32 "_" or "-") after a blank line at the top. Everything from there on is the signature. A
# match that begins with line breaks begins its signature after them.
SIGNATURE = re2.compile(
    f"(?mi)^{QUOTE}(?:[-_]{{2}}\\n|(?:{'|'.join(SENT_FROM)}) ?[{WORD_CLASS}.<>:/ ]+$)"
    f"|\\n{QUOTE}{_CLOSING}"
    "|\\n\\n+ ?[_-]{32}")

# -- disclaimers ------------------------------------------------------------------------------

_SPACE = r"[ \x{200b}\x{a0}\t]"
DISCLAIMER_WORDS = [
    "CAUTION:", "Disclaimer:", "Warning:", "Confidential:", "CONFIDENTIALITY:",
    "(?:Privileged|Confidential|Private|Sensitive|Important) (?:Notice|Note|Information):",
    r"[*\[ \x{200b}\x{a0}\t]\]*Disclaimer[*\[ \x{200b}\x{a0}\t]\]*",  # a starred "*Disclaimer*"
    "(?:Wichtiger )?Hinweis:", "Achtung:",
    "Upozornění:", "Důvěrné:", "Varování:",
    "Advarsel:", "Bemærk:", "Fortroligt:",
    "Aviso:", "Confidencialidad:", "Advertencia:", "Descargo de responsabilidad:",
    "면책 조항:", "주의:", "비밀정보:",
    "Waarschuwing:",
    "Uwaga:",
    "Varning:", "Observera:",
    "免责声明：", "注意：", "重要信息：",
]
_DISCLAIMER_TEXT = "[a-zA-Z0-9\\x{c0}-\\x{17f}:;.,?!<>()@&/'\"“” \\x{200b}\\x{a0}\\t\\-]"
_LINE_BREAK = f"[,()]?{_SPACE}{{0,3}}[\\n\\r]?{_SPACE}{{0,3}}[,()]?"
# A sentence that begins with a disclaimer word and mentions mail ("e-mail", "this email")
# within its line or the next: a footer a mail server added, not what the sender wrote.
DISCLAIMER = re2.compile(
    f"(?mi)(?:[\\n\\r.!?]|^){_SPACE}{{0,3}}(?:{'|'.join(word.replace(' ', _SPACE) for word in DISCLAIMER_WORDS)})"
    f"(?:{_LINE_BREAK}{_DISCLAIMER_TEXT}*?mail{_DISCLAIMER_TEXT}*){{1,2}}")

# -- normalisation ------------------------------------------------------------------------------

BLANK_RUN = re2.compile("\n\n\n+")
# Outlook's separator (32 or more "_" or "-") after a blank line: dropped, with the blank lines
# before it, so that the header block below it is found as the start of the quoted history.
OUTLOOK_SEPARATOR = re2.compile("([^\n])\n\n+ ?[_-]{32,}")
