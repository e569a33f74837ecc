"""How SMTP command arguments are read: MAIL FROM and RCPT TO paths (RFC 5321 4.1.2, with
RFC 6531's UTF-8), ESMTP parameters, and the HELP texts.

A path is ``<`` [A-d-l ``:``] Mailbox ``>``; Mailbox = Local-part ``@`` (Domain /
address-literal); Local-part = Dot-string / Quoted-string. Where senders in the wild differ
from the grammar, Conduit takes what they send (the mail would otherwise be lost), and says so:

- a mailbox without angle brackets (``MAIL FROM:ann@example.com``);
- a local part with empty atoms between dots (``ann..lee``, ``.ann``, ``ann.``);
- UTF-8 in local parts and domains with or without the SMTPUTF8 parameter.

Everything else outside the grammar is malformed: spaces or comments inside the brackets,
RFC 2047 encoded words (never allowed in an address), a domain with other characters than
letters, digits and inner hyphens, an address literal that is not an IPv4 address, ``IPv6:``
and an IPv6 address, or a tag and its text. tests/unit/test_smtp_syntax.py compares this with
what aiosmtpd's parser (on the stdlib's private email header parser) made of a recorded corpus,
and lists each deliberate difference.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

# HELP: each command's syntax, and what EHLO sessions see added to it.
HELP = {
    "AUTH": "AUTH <mechanism>", "DATA": "DATA", "EHLO": "EHLO hostname", "HELO": "HELO hostname",
    "HELP": "HELP [command]", "MAIL": "MAIL FROM: <address>", "NOOP": "NOOP [ignored]", "QUIT": "QUIT",
    "RCPT": "RCPT TO: <address>", "RSET": "RSET", "STARTTLS": "STARTTLS", "VRFY": "VRFY <address>",
}
HELP_EXTENDED = {"MAIL": " [SP <mail-parameters>]", "RCPT": " [SP <mail-parameters>]"}

# Control characters, and lone surrogates (the stand-ins for bytes that are not UTF-8): no SMTP
# argument contains them, and neither database can store them all (NUL, surrogates).
UNSTORABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")

# RFC 5321 4.1.2 with RFC 6531 3.3: UTF8-non-ascii wherever atext, qtext or a label letter may
# stand (lone surrogates, which stand for bytes that are not UTF-8, are not characters).
_UTF8 = "\u0080-\ud7ff\ue000-\U0010ffff"
_ATEXT = f"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~{_UTF8}-]"
_DOT_STRING = rf"\.*{_ATEXT}+(?:\.+{_ATEXT}+)*\.*"  # with the empty atoms senders use
_QUOTED_STRING = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_UTF8}]|\\[\x20-\x7e])*"'
_LET_DIG = f"[A-Za-z0-9{_UTF8}]"
_LABEL = rf"{_LET_DIG}(?:-*{_LET_DIG})*"  # no hyphen first or last; one way to match, no backtracking
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"  # dcontent; what is inside is checked after the match
_MAILBOX = rf"(?P<local>{_DOT_STRING}|{_QUOTED_STRING})(?:@(?P<domain>{_DOMAIN}|{_LITERAL}))?"
_ANGLED = re.compile(rf"<(?:@{_DOMAIN}(?:,@{_DOMAIN})*:)?{_MAILBOX}>|<>")
_BARE = re.compile(_MAILBOX)
_UNQUOTED = re.compile(_DOT_STRING)
# What nearly every client sends: an ASCII dot-atom and an ordinary domain in brackets. Read by
# this one expression it gives exactly what the full grammar gives, in less time.
_COMMON = re.compile(r"<([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                     r"@[A-Za-z0-9]+(?:(?:\.|-+)[A-Za-z0-9]+)*)>")
_QUOTED_PAIR = re.compile(r"\\(.)")


class Path(NamedTuple):
    mailbox: str  # "local@domain", a quoted local part in its simplest form; "" for "<>"
    rest: str  # what follows the path: the ESMTP parameters, if any
    has_domain: bool


def parse_path(arg: str) -> Path | None:
    """A Reverse-path or Forward-path and what follows it; None when it is malformed. A mailbox
    without a domain is returned with ``has_domain`` False (RCPT TO:<Postmaster>, VRFY)."""
    common = _COMMON.match(arg)
    if common is not None:
        end = common.end()
        if end == len(arg):
            return Path(common.group(1), "", True)
        return Path(common.group(1), arg[end:].strip(), True)
    return parse_by_grammar(arg)


def parse_by_grammar(arg: str) -> Path | None:
    """``parse_path`` without its shortcut for common paths (tests compare the two)."""
    angled = arg.startswith("<")
    match = (_ANGLED if angled else _BARE).match(arg)
    if match is None:
        return None
    end = match.end()
    if not angled and end < len(arg) and arg[end] not in " \t":
        return None  # a mailbox without brackets runs into something that is not part of it
    local, domain = match.group("local", "domain")
    if local is None:
        return Path("", arg[end:].strip(), True)
    if local[0] == '"':
        local = _canonical_quoted(local)
    if domain is None:
        return Path(local, arg[end:].strip(), False)
    if domain[0] == "[" and not _valid_literal(domain[1:-1]):
        return None
    return Path(f"{local}@{domain}", arg[end:].strip(), True)


def _canonical_quoted(local: str) -> str:
    """A quoted local part in its simplest form, as the same mailbox is written elsewhere:
    quoted pairs that need no backslash lose it, quotes that are not needed go."""
    content = _QUOTED_PAIR.sub(lambda m: m.group(0) if m.group(1) in '"\\' else m.group(1), local[1:-1])
    return content if _UNQUOTED.fullmatch(content) else f'"{content}"'


def _valid_literal(text: str) -> bool:
    """RFC 5321 4.1.3: an IPv4 address, "IPv6:" and an IPv6 address, or a tag, ":" and text."""
    tag, colon, value = text.partition(":")
    try:
        if not colon:
            ipaddress.IPv4Address(text)
        elif tag.upper() == "IPV6":
            ipaddress.IPv6Address(value)
        else:
            return re.fullmatch(r"[A-Za-z0-9](?:-*[A-Za-z0-9])*", tag) is not None and bool(value)
    except ValueError:
        return False
    return True


def strip_keyword(keyword: str, arg: str) -> str | None:
    """The rest of ``arg`` after ``keyword`` ("FROM:", "TO:", any case), or None without it."""
    if arg[:len(keyword)].upper() == keyword:
        return arg[len(keyword):].strip()
    return None


def parse_params(params: list[str]) -> dict[str, str | bool] | None:
    """ESMTP parameters (RFC 1869) as a dict, a bare keyword as True; None if one is malformed."""
    result: dict[str, str | bool] = {}
    for param in params:
        name, eq, value = param.partition("=")
        if not name.isalnum() or (eq and not value):
            return None
        result[name] = value if eq else True
    return result
