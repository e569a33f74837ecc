"""SMTP commands: each verb's arguments and sequence rules, and what reaches the handler.

Each command is a function of the session's protocol (conduit/smtp/protocol.py) and the
command's argument; it answers with ``protocol.reply`` at once, or starts a step that answers
when the handler has decided. AUTH and STARTTLS are in conduit/smtp/auth.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from conduit.observability import metrics
from conduit.smtp import auth, replies
from conduit.smtp.contract import Envelope
from conduit.smtp.framing import TOO_BIG, TOO_LONG, Dropped
from conduit.smtp.syntax import (
    HELP,
    UNSTORABLE,
    parse_params,
    parse_path,
    strip_keyword,
)

if TYPE_CHECKING:
    from conduit.smtp.protocol import SmtpProtocol

log = logging.getLogger("conduit.smtp")

COMMAND_LIMIT = 512  # RFC 5321 4.5.3.1.4; MAIL may be longer after EHLO (SIZE=, SMTPUTF8)
_MAIL_ALLOWANCE = 26 + 10
_MAX_HOSTNAME = 255  # the column that keeps HELO, and RFC 1035's limit
BOGUS_LIMIT = 5

Command = Callable[["SmtpProtocol", "str | None"], None]


def dispatch(p: SmtpProtocol, line: bytes | Dropped) -> None:
    """One command line: its verb found, its argument decoded, the command run."""
    p.command, p.argument = "", None
    if line is TOO_LONG:
        p.reply(replies.LINE_TOO_LONG)
        return
    assert isinstance(line, bytes)
    if not line:
        p.reply(replies.SYNTAX_ERROR)
        return
    verb, _, arg_bytes = line.partition(b" ")
    try:
        command = verb.upper().decode("ascii")
    except UnicodeDecodeError:
        p.reply(replies.SYNTAX_ERROR)
        return
    # Not UTF-8: decoded to lone surrogates, which the commands that store arguments refuse.
    arg = str(arg_bytes.strip(), "utf-8", "surrogateescape") if arg_bytes else None
    limit = p.mail_limit if command == "MAIL" and p.session.extended_smtp else COMMAND_LIMIT
    if len(line) > limit:
        p.reply(replies.LINE_TOO_LONG)
        return
    p.command = command
    p.argument = arg if command in ("MAIL", "RCPT") else None  # AUTH's holds credentials
    metrics.smtp_command(command)
    run = COMMANDS.get(command)
    if run is None:
        p.bogus_budget -= 1
        if p.bogus_budget < 1:
            p.reply(replies.TOO_MANY_UNRECOGNIZED)
            p.close()
            return
        p.reply(replies.unrecognized(command))
        return
    p.touch()
    try:
        run(p, arg)
    except Exception as error:  # noqa: BLE001 - answered like a failing hook
        p.failed(error)


def refused(p: SmtpProtocol, arg: str | None, hostname: bool = False) -> bool:
    """Arguments that reach the handler (and the database) are checked first: a NUL or a byte
    that is not UTF-8 would make the commit fail, answered 451, and the sender would retry."""
    if arg and UNSTORABLE.search(arg):
        p.reply(replies.INVALID_CHARACTERS)
        return True
    if hostname and arg and len(arg) > _MAX_HOSTNAME:
        p.reply(replies.BAD_HOSTNAME)
        return True
    return False


def hello_needed(p: SmtpProtocol, verb: str = "HELO") -> bool:
    if not p.session.host_name:
        p.reply(replies.send_hello_first(verb))
        return True
    return False


def helo(p: SmtpProtocol, arg: str | None) -> None:
    if refused(p, arg, hostname=True):
        return
    if not arg:
        p.reply(replies.HELO_SYNTAX)
        return
    p.envelope = Envelope()
    p.session.extended_smtp = False
    p.session.host_name = arg
    p.reply(p.config.hello)


def ehlo(p: SmtpProtocol, arg: str | None) -> None:
    if refused(p, arg, hostname=True):
        return
    p.mail_limit = COMMAND_LIMIT
    if not arg:
        p.reply(replies.EHLO_SYNTAX)
        return
    p.envelope = Envelope()
    p.session.extended_smtp = True
    p.session.host_name = arg
    p.mail_limit += _MAIL_ALLOWANCE
    p.reply(p.config.extended_hello(p.tls))


def noop(p: SmtpProtocol, arg: str | None) -> None:  # noqa: ARG001 - the signature of every command handler
    p.reply(replies.OK)


def quit_(p: SmtpProtocol, arg: str | None) -> None:
    if arg:
        p.reply(replies.QUIT_SYNTAX)
        return
    p.reply(replies.BYE)
    p.close()


def rset(p: SmtpProtocol, arg: str | None) -> None:
    if arg:
        p.reply(replies.RSET_SYNTAX)
        return
    p.envelope = Envelope()
    p.reply(replies.RESET)


def help_(p: SmtpProtocol, arg: str | None) -> None:
    helped = sorted(name for name in HELP if name != "STARTTLS" or p.config.tls_context)
    if arg:
        command = arg.upper()
        if command in helped:
            p.reply(replies.help_for(command, extended=p.session.extended_smtp))
            return
    p.reply(replies.help_list(helped, known=not arg))


def vrfy(p: SmtpProtocol, arg: str | None) -> None:
    if not arg:
        p.reply(replies.VRFY_SYNTAX)
    elif parse_path(arg) is None:
        p.reply(replies.could_not_vrfy(arg))
    else:
        p.reply(replies.CANNOT_VRFY)


def expn(p: SmtpProtocol, arg: str | None) -> None:  # noqa: ARG001 - the signature of every command handler
    p.reply(replies.EXPN_NOT_IMPLEMENTED)


def mail(p: SmtpProtocol, arg: str | None) -> None:
    if refused(p, arg) or hello_needed(p):
        return
    path = _path(p, "MAIL", "FROM:", arg)
    if path is None:
        return
    if p.envelope.mail_from is not None:  # after the path's checks, as aiosmtpd answered
        p.reply(replies.NESTED_MAIL)
        return
    address, rest = path
    parsed = _params(p, "MAIL", "FROM:", rest)
    if parsed is None:
        return
    params, options = parsed
    if params.pop("BODY", "7BIT") not in ("7BIT", "8BITMIME"):
        p.reply(replies.BAD_BODY)
        return
    smtputf8 = params.pop("SMTPUTF8", False)
    if smtputf8 is not True and smtputf8 is not False:
        p.reply(replies.SMTPUTF8_TAKES_NO_ARGUMENTS)
        return
    size = params.pop("SIZE", None)
    if size:
        if size is True or not size.isdigit():
            p.reply(replies.path_syntax("MAIL", "FROM:", extended=p.session.extended_smtp))
            return
        if int(size) > p.config.data_size_limit:
            p.reply(replies.MESSAGE_TOO_BIG)
            return
    if params:
        p.reply(replies.MAIL_PARAMETERS_UNKNOWN)
        return
    envelope = p.envelope
    reply = p.handler.mail(p.session, envelope, address)
    if reply.positive:
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        envelope.smtp_utf8 = smtputf8
    p.reply(reply)


def rcpt(p: SmtpProtocol, arg: str | None) -> None:
    if refused(p, arg) or hello_needed(p):
        return
    if p.envelope.mail_from is None:
        p.reply(replies.NEED_MAIL)
        return
    path = _path(p, "RCPT", "TO:", arg)
    if path is None:
        return
    address, rest = path
    parsed = _params(p, "RCPT", "TO:", rest)
    if parsed is None:
        return
    params, options = parsed
    if params:
        p.reply(replies.RCPT_PARAMETERS_UNKNOWN)
        return
    p.start(_recipient(p, p.envelope, address, options))


async def _recipient(p: SmtpProtocol, envelope: Envelope, address: str, options: list[str]) -> None:
    reply = await p.handler.rcpt(p.session, envelope, address)
    if reply.positive:
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
    p.reply(reply)


def _path(p: SmtpProtocol, command: str, keyword: str, arg: str | None) -> tuple[str, str] | None:
    """MAIL's or RCPT's ``<address>`` after ``keyword``, and what follows it; None once an
    error has been answered. RCPT takes a mailbox without a domain only for Postmaster
    (RFC 5321 4.1.1.3); MAIL takes the null path."""
    arg = strip_keyword(keyword, arg) if arg is not None else None
    if not arg:
        p.reply(replies.path_syntax(command, keyword, extended=p.session.extended_smtp))
        return None
    path = parse_path(arg)
    if path is None or (not path.has_domain and (command == "MAIL" or path.mailbox.lower() != "postmaster")) \
            or (command == "RCPT" and not path.mailbox):
        p.reply(replies.MALFORMED_ADDRESS)
        return None
    if path.rest and not p.session.extended_smtp:
        p.reply(replies.path_syntax(command, keyword, extended=False))
        return None
    return path.mailbox, path.rest


def _params(p: SmtpProtocol, command: str, keyword: str,
            rest: str) -> tuple[dict[str, str | bool], list[str]] | None:
    """The ESMTP parameters after the path: (them parsed, the options as given, upper-cased),
    or None once a syntax error has been answered."""
    options = rest.upper().split()
    params = parse_params(options)
    if params is None:
        p.reply(replies.path_syntax(command, keyword, extended=p.session.extended_smtp))
        return None
    return params, options


def data(p: SmtpProtocol, arg: str | None) -> None:
    if hello_needed(p):
        return
    if not p.envelope.rcpt_tos:
        p.reply(replies.NEED_RCPT)
        return
    if arg:
        p.reply(replies.DATA_SYNTAX)
        return
    p.reply(replies.START_DATA)
    p.input.start_message()


def message(p: SmtpProtocol, content: bytes | Dropped) -> None:
    """The message after DATA, read to its end of data: to the handler, or refused as too big."""
    if content is TOO_BIG:
        try:
            p.handler.refused(p.session, p.envelope, replies.MESSAGE_TOO_BIG)
        except Exception as error:  # noqa: BLE001 - noting the refusal never changes the reply
            log.error("event=refusal_not_recorded error=%r", error)
        p.envelope = Envelope()
        p.reply(replies.MESSAGE_TOO_BIG)
        return
    assert isinstance(content, bytes)
    p.envelope.content = content
    p.touch()  # the session's timeout starts again for Conduit's answer (a synchronous webhook's wait)
    p.start(_deliver(p, p.envelope))


async def _deliver(p: SmtpProtocol, envelope: Envelope) -> None:
    reply = await p.handler.data(p.session, envelope)
    p.envelope = Envelope()
    p.reply(reply)


COMMANDS: dict[str, Command] = {
    "HELO": helo, "EHLO": ehlo, "NOOP": noop, "QUIT": quit_, "RSET": rset, "HELP": help_, "VRFY": vrfy,
    "EXPN": expn, "MAIL": mail, "RCPT": rcpt, "DATA": data, "AUTH": auth.auth, "STARTTLS": auth.starttls,
}
