"""Every SMTP reply Conduit sends, defined once: constants, and factories for the few that carry
an argument.

The wording is aiosmtpd's (Conduit's SMTP library before its own protocol), with Conduit's
enhanced status codes where it reworded them: clients see the server they knew, and
tests/e2e/test_smtp_conversation.py keeps every text.
"""

from __future__ import annotations

from conduit.smtp.syntax import HELP, HELP_EXTENDED


class Reply:
    """One reply: a code and its lines, encoded for the wire once, when it is made, and a short
    ``reason`` for metrics and logs (a constant's is its name in lower case)."""

    __slots__ = ("code", "lines", "reason", "wire")

    def __init__(self, code: int, *lines: str, reason: str = "other") -> None:
        self.code = code
        self.reason = reason
        self.lines = lines or ("",)
        last = len(self.lines) - 1
        self.wire = b"".join(f"{code}{' ' if i == last else '-'}{line}\r\n".encode("utf-8", "surrogateescape")
                             for i, line in enumerate(self.lines))

    @property
    def positive(self) -> bool:
        """2xx or 3xx: the command was taken."""
        return self.code < 400

    def __str__(self) -> str:
        return "\r\n".join(f"{self.code}{' ' if i == len(self.lines) - 1 else '-'}{line}"
                           for i, line in enumerate(self.lines))

    def __repr__(self) -> str:
        return f"Reply({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reply) and other.wire == self.wire

    def __hash__(self) -> int:
        return hash(self.wire)


# --- the session ------------------------------------------------------------------------------

def greeting(hostname: str) -> Reply:
    return Reply(220, f"{hostname} Conduit ESMTP", reason="greeting")


def hello(hostname: str) -> Reply:
    """HELO's answer."""
    return Reply(250, hostname, reason="hello")


def extended_hello(hostname: str, size_limit: int, *, starttls: bool, auth: tuple[str, ...] | None) -> Reply:
    """EHLO's answer: the extensions on offer (AUTH only where it may be used: over TLS unless
    CONDUIT_SMTP_AUTH_INSECURE)."""
    lines = [hostname, f"SIZE {size_limit}", "8BITMIME", "SMTPUTF8"]
    if starttls:
        lines.append("STARTTLS")
    if auth:
        lines.append("AUTH " + " ".join(auth))
    return Reply(250, *lines, "PIPELINING", "HELP", reason="hello")


BYE = Reply(221, "Bye")
OK = Reply(250, "OK")
RESET = Reply(250, "2.0.0 Ok")
TOO_MANY_SESSIONS = Reply(421, "4.3.2 Too many connections, try again later")
TIMEOUT = Reply(421, "4.4.2 Timeout, closing connection")

# --- command syntax and sequence ----------------------------------------------------------------

LINE_TOO_LONG = Reply(500, "5.5.2 Line too long")
SYNTAX_ERROR = Reply(500, "5.5.2 Syntax error")
TOO_MANY_UNRECOGNIZED = Reply(502, "5.5.1 Too many unrecognized commands, goodbye.")
INVALID_CHARACTERS = Reply(
    501, "5.5.4 Invalid characters: control characters and bytes that are not UTF-8 are refused")
BAD_HOSTNAME = Reply(501, "5.5.4 Invalid hostname: longer than 255 characters")
HELO_SYNTAX = Reply(501, "Syntax: HELO hostname")
EHLO_SYNTAX = Reply(501, "Syntax: EHLO hostname")
QUIT_SYNTAX = Reply(501, "Syntax: QUIT")
RSET_SYNTAX = Reply(501, "Syntax: RSET")
DATA_SYNTAX = Reply(501, "5.5.4 Syntax: DATA")
VRFY_SYNTAX = Reply(501, "Syntax: VRFY <address>")
STARTTLS_SYNTAX = Reply(501, "Syntax: STARTTLS")
CANNOT_VRFY = Reply(252, "Cannot VRFY user, but will accept message and attempt delivery")
EXPN_NOT_IMPLEMENTED = Reply(502, "EXPN not implemented")
NESTED_MAIL = Reply(503, "Error: nested MAIL command")
NEED_MAIL = Reply(503, "Error: need MAIL command")
NEED_RCPT = Reply(503, "5.5.1 Error: need RCPT command")
MALFORMED_ADDRESS = Reply(553, "5.1.3 Error: malformed address")
BAD_BODY = Reply(501, "Error: BODY can only be one of 7BIT, 8BITMIME")
SMTPUTF8_TAKES_NO_ARGUMENTS = Reply(501, "Error: SMTPUTF8 takes no arguments")
MAIL_PARAMETERS_UNKNOWN = Reply(555, "MAIL FROM parameters not recognized or not implemented")
RCPT_PARAMETERS_UNKNOWN = Reply(555, "RCPT TO parameters not recognized or not implemented")
START_DATA = Reply(354, "End data with <CR><LF>.<CR><LF>")


def unrecognized(command: str) -> Reply:
    return Reply(500, f'Error: command "{command}" not recognized', reason="unrecognized")


def send_hello_first(verb: str) -> Reply:
    return Reply(503, f"Error: send {verb} first", reason="send_hello_first")


def could_not_vrfy(argument: str) -> Reply:
    return Reply(502, f"Could not VRFY {argument}", reason="could_not_vrfy")


def path_syntax(command: str, keyword: str, *, extended: bool) -> Reply:
    """MAIL's or RCPT's syntax error, with the ESMTP parameters in an EHLO session."""
    return Reply(501, f"Syntax: {command} {keyword} <address>" + (HELP_EXTENDED[command] if extended else ""),
                 reason="syntax")


def help_for(command: str, *, extended: bool) -> Reply:
    return Reply(250, f"Syntax: {HELP[command]}{HELP_EXTENDED.get(command, '') if extended else ''}", reason="help")


def help_list(commands: list[str], *, known: bool = True) -> Reply:
    """HELP's list of commands: 250, or 501 after HELP for a command it does not know."""
    return Reply(250 if known else 501, f"Supported commands: {' '.join(commands)}", reason="help")


# --- mail transactions --------------------------------------------------------------------------

OK_SENDER = Reply(250, "2.1.0 Sender ok")
OK_RECIPIENT = Reply(250, "2.1.5 Recipient ok")
UNKNOWN_RECIPIENT = Reply(550, "5.1.1 No such recipient here")
INACTIVE_RECIPIENT = Reply(550, "5.2.1 Mailbox disabled: this address is not accepting mail")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3 Too many recipients")
NO_VALID_RECIPIENTS = Reply(554, "5.5.1 No valid recipients")
MESSAGE_TOO_BIG = Reply(552, "5.3.4 Message too big for system")
TEMPORARY_FAILURE = Reply(451, "4.3.0 Temporary failure, please try again later")
SPAM_CHECK_UNAVAILABLE = Reply(451, "4.7.1 Spam filter unavailable, please try again later")
# Synchronous webhooks (conduit/services/synchronous.py): one per transaction, so that one answer
# decides the reply; the sender sends the others in another transaction (RFC 5321 4.5.3.1.10).
ONE_SYNCHRONOUS_WEBHOOK = Reply(452, "4.5.3 Too many recipients, send this one in another transaction")
SYNC_DEFERRED = Reply(451, "4.3.0 The receiving webhook did not take the message, please try again later")


def queued(message_id: str) -> Reply:
    return Reply(250, f"2.0.0 Ok: queued as {message_id}", reason="queued")


def sync_refused(reason: str, status: int | None) -> Reply:
    """A synchronous webhook's refusal: its reason (sanitized printable ASCII), or a sentence."""
    return Reply(550, f"5.7.1 {reason or f'Message refused by the receiving webhook (HTTP {status})'}",
                 reason="sync_refused")


def policy_refusal(code: int, enhanced: str, text: str, *, check: str = "check") -> Reply:
    """An SMTP security policy's refusal (conduit/services/policy_rules.py words them); ``check``
    names the failed check (source_ip, smtp_auth, spf, dkim)."""
    return Reply(code, f"{enhanced} {text}", reason=f"policy_{check}")


# --- STARTTLS and AUTH --------------------------------------------------------------------------

READY_FOR_TLS = Reply(220, "Ready to start TLS")
TLS_NOT_AVAILABLE = Reply(454, "TLS not available")
TLS_ALREADY_ACTIVE = Reply(503, "5.5.1 Error: TLS already active")
AUTH_NOT_RECOGNIZED = Reply(500, "Error: command 'AUTH' not recognized")
AUTH_NEEDS_TLS = Reply(538, "5.7.11 Encryption required for requested authentication mechanism")
ALREADY_AUTHENTICATED = Reply(503, "Already authenticated")
AUTH_NOT_ENOUGH_VALUES = Reply(501, "Not enough value")
AUTH_TOO_MANY_VALUES = Reply(501, "Too many values")
AUTH_UNKNOWN_MECHANISM = Reply(504, "5.5.4 Unrecognized authentication type")
AUTH_ABORTED = Reply(501, "5.7.0 Auth aborted")
AUTH_CANNOT_SPLIT = Reply(501, "5.5.2 Can't split auth value")
AUTH_CANNOT_DECODE = Reply(501, "5.5.2 Can't decode base64")
AUTH_SUCCESS = Reply(235, "2.7.0 Authentication successful")
AUTH_FAILED = Reply(535, "5.7.8 Authentication credentials invalid")
AUTH_THROTTLED = Reply(454, "4.7.0 Too many authentication failures, try later")
AUTH_FAILURES_CLOSE = Reply(421, "4.7.0 Too many authentication failures, closing connection")


def challenge(text: bytes) -> Reply:
    """An AUTH challenge (RFC 4954): 334 and base64 text, which may be empty."""
    return Reply(334, text.decode("ascii"), reason="auth_challenge")


def _name_constants() -> None:
    for name, value in globals().items():
        if isinstance(value, Reply):
            value.reason = name.lower()


_name_constants()
