"""What an SMTP session knows, and how its command arguments are read: addresses, ESMTP
parameters, HELP texts. The replies and their quirks are aiosmtpd's, which Conduit used before
its own protocol (tests/e2e/test_smtp_conversation.py keeps them)."""

from __future__ import annotations

import re
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

# RFC 5321's dot-atom local part and an ordinary domain, in angle brackets, then nothing or
# parameters after a space: what nearly every client sends. The standard library's parser,
# which handles everything else, reads these to exactly the same address, just slower.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(?:[ \t]+(?![ \t(])(.*))?\Z")

# HELP: each command's syntax, and what EHLO sessions see added to it.
HELP = {
    "AUTH": "AUTH <mechanism>", "DATA": "DATA", "EHLO": "EHLO hostname", "HELO": "HELO hostname",
    "HELP": "HELP [command]", "MAIL": "MAIL FROM: <address>", "NOOP": "NOOP [ignored]", "QUIT": "QUIT",
    "RCPT": "RCPT TO: <address>", "RSET": "RSET", "STARTTLS": "STARTTLS", "VRFY": "VRFY <address>",
}
HELP_EXTENDED = {"MAIL": " [SP <mail-parameters>]", "RCPT": " [SP <mail-parameters>]"}


class Session:
    """One connection's state that the handler reads (a new one after STARTTLS, RFC 3207 4.2)."""

    __slots__ = ("peer", "host_name", "ssl", "extended_smtp", "authenticated")

    def __init__(self, peer: Any, ssl: dict[str, Any] | None = None) -> None:
        self.peer = peer
        self.host_name: str | None = None
        self.ssl = ssl
        self.extended_smtp = False
        self.authenticated = False


class Envelope:
    """One mail transaction, from MAIL to the end of DATA (or RSET)."""

    __slots__ = ("mail_from", "mail_options", "rcpt_tos", "rcpt_options", "content", "original_content",
                 "smtp_utf8")

    def __init__(self) -> None:
        self.mail_from: str | None = None
        self.mail_options: list[str] = []
        self.rcpt_tos: list[str] = []
        self.rcpt_options: list[str] = []
        self.content: bytes | None = None
        self.original_content: bytes | None = None
        self.smtp_utf8 = False


def strip_keyword(keyword: str, arg: str) -> str | None:
    """The rest of ``arg`` after ``keyword`` ("FROM:", "TO:", any case), or None without it."""
    if arg[:len(keyword)].upper() == keyword:
        return arg[len(keyword):].strip()
    return None


def parse_address(arg: str) -> tuple[str | None, str | None]:
    """(address, what follows it); ("", "") for nothing; (None, None) when it is malformed."""
    if not arg:
        return "", ""
    simple = _SIMPLE.match(arg) if "=?" not in arg else None  # the stdlib decodes encoded words
    if simple:
        return simple.group(1), simple.group(2) or ""
    try:
        address, rest = get_angle_addr(arg) if arg.lstrip().startswith("<") else get_addr_spec(arg)
    except HeaderParseError:
        return None, None
    return address.addr_spec, rest


def parse_params(params: list[str]) -> dict[str, str | bool] | None:
    """ESMTP parameters (RFC 1869) as a dict, a bare keyword as True; None if one is malformed."""
    result: dict[str, str | bool] = {}
    for param in params:
        name, eq, value = param.partition("=")
        if not name.isalnum() or eq and not value:
            return None
        result[name] = value if eq else True
    return result
