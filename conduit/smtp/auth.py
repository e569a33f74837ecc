"""STARTTLS (RFC 3207) and AUTH (RFC 4954: PLAIN and LOGIN).

The handler judges the credentials (``Handler.authenticate``: the SMTP security policies they
open, or a refusal, or a throttle shared by every SMTP node); this module speaks the exchange,
records the outcome in the session and ends a session that keeps guessing.
"""

from __future__ import annotations

import binascii
import logging
from base64 import b64decode
from typing import TYPE_CHECKING

from conduit.smtp import replies
from conduit.smtp.contract import Authenticated, AuthResult
from conduit.smtp.framing import TOO_LONG
from conduit.smtp.syntax import UNSTORABLE

if TYPE_CHECKING:
    from conduit.smtp.protocol import SmtpProtocol

log = logging.getLogger("conduit.smtp")

AUTH_MECHANISMS = ("LOGIN", "PLAIN")

_USERNAME_CHALLENGE = replies.challenge(b"VXNlciBOYW1lAA==")  # "User Name\0" in base64
_PASSWORD_CHALLENGE = replies.challenge(b"UGFzc3dvcmQA")  # "Password\0"
_EMPTY_CHALLENGE = replies.challenge(b"")


def starttls(p: SmtpProtocol, arg: str | None) -> None:
    if arg:
        p.reply(replies.STARTTLS_SYNTAX)
    elif not p.config.tls_context:
        p.reply(replies.TLS_NOT_AVAILABLE)
    elif p.tls:
        p.reply(replies.TLS_ALREADY_ACTIVE)
    else:
        p.reply(replies.READY_FOR_TLS)
        p.start(_handshake(p))


async def _handshake(p: SmtpProtocol) -> None:
    await p.start_tls()


def auth(p: SmtpProtocol, arg: str | None) -> None:
    session = p.session
    if not session.host_name:
        p.reply(replies.send_hello_first("EHLO"))
    elif not session.extended_smtp:
        p.reply(replies.AUTH_NOT_RECOGNIZED)
    elif p.config.auth_require_tls and not p.tls:
        p.reply(replies.AUTH_NEEDS_TLS)
    elif session.auth is not None:
        p.reply(replies.ALREADY_AUTHENTICATED)
    elif not arg:
        p.reply(replies.AUTH_NOT_ENOUGH_VALUES)
    elif len(args := arg.split()) > 2:
        p.reply(replies.AUTH_TOO_MANY_VALUES)
    elif args[0] not in AUTH_MECHANISMS:
        p.reply(replies.AUTH_UNKNOWN_MECHANISM)
    else:
        p.start(_authenticate(p, args))


async def _authenticate(p: SmtpProtocol, args: list[str]) -> None:
    credentials = await (_plain(p, args) if args[0] == "PLAIN" else _login(p, args))
    if credentials is None:
        return  # answered already
    login, password = (part.decode("utf-8", "replace") for part in credentials)
    session = p.session
    # A login no database can store (a NUL) opens nothing: refused like any unknown one.
    result = AuthResult() if UNSTORABLE.search(login) else await p.handler.authenticate(session, login, password)
    if result.throttled:
        log.info("event=smtp_auth_throttled peer=%r", session.peer)
        p.reply(replies.AUTH_THROTTLED)
    elif result.policies:
        session.auth = Authenticated(login=login, policies=result.policies)
        p.reply(replies.AUTH_SUCCESS)
    else:
        p.auth_failures += 1
        if p.auth_failures >= p.config.auth_failures_per_session:
            log.info("event=smtp_auth_failures_closed peer=%r failures=%d", session.peer, p.auth_failures)
            p.reply(replies.AUTH_FAILURES_CLOSE)
            p.close()
        else:
            p.reply(replies.AUTH_FAILED)


async def _plain(p: SmtpProtocol, args: list[str]) -> tuple[bytes, bytes] | None:
    decoded = await _challenge(p, _EMPTY_CHALLENGE) if len(args) == 1 else _decode(p, args[1].encode())
    if decoded is None:
        return None
    try:
        _, login, password = decoded.split(b"\x00")  # authorization id, login, password (RFC 4616)
    except ValueError:
        p.reply(replies.AUTH_CANNOT_SPLIT)
        return None
    return login, password


async def _login(p: SmtpProtocol, args: list[str]) -> tuple[bytes, bytes] | None:
    login = await _challenge(p, _USERNAME_CHALLENGE) if len(args) == 1 else _decode(p, args[1].encode())
    if login is None:
        return None
    password = await _challenge(p, _PASSWORD_CHALLENGE)
    if password is None:
        return None
    return login, password


async def _challenge(p: SmtpProtocol, challenge: replies.Reply) -> bytes | None:
    """The client's decoded answer to a 334 challenge; None if it cancelled or garbled it."""
    line = await p.read_answer(challenge)
    if line is TOO_LONG:
        p.reply(replies.LINE_TOO_LONG)
        return None
    assert isinstance(line, bytes)
    blob = line.strip()
    if blob == b"*":
        p.reply(replies.AUTH_ABORTED)
        return None
    return _decode(p, blob)


def _decode(p: SmtpProtocol, blob: bytes) -> bytes | None:
    try:
        return b64decode(blob, validate=True)
    except binascii.Error:
        p.reply(replies.AUTH_CANNOT_DECODE)
        return None
