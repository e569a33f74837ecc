"""Conduit's SMTP server protocol, written on asyncio.Protocol.

aiosmtpd ran a coroutine per command on a StreamReader and inspected its handler on every
connection: 0.65-0.91 ms of CPU per message before Conduit did anything. Here bytes are parsed
as they arrive and replies written at once; only the steps that wait for something (a
recipient's route, the commit of a message, a password check, the TLS handshake) run in a
task, and the lines a client pipelined behind them (RFC 2920) wait in the buffer meanwhile.

The replies are aiosmtpd's (with Conduit's enhanced status codes where it reworded them), so
clients see the server they knew; tests/e2e/test_smtp_conversation.py keeps them.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import re
import ssl
from base64 import b64decode
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from conduit.smtp import replies
from conduit.smtp.handler import ConduitHandler
from conduit.smtp.syntax import HELP, HELP_EXTENDED, Envelope, Session, parse_address, parse_params, strip_keyword

log = logging.getLogger("conduit.smtp")

# Control characters, and lone surrogates (the stand-ins for bytes that are not UTF-8): no SMTP
# argument contains them, and neither database can store them all (NUL, surrogates).
_UNSTORABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_MAX_HOSTNAME = 255  # the column that keeps HELO, and RFC 1035's limit
_COMMAND_LIMIT = 512  # RFC 5321 4.5.3.1.4; MAIL may be longer after EHLO (SIZE=, SMTPUTF8)
_MAIL_ALLOWANCE = 26 + 10
_LINE_LIMIT = 1001  # longer lines are dropped unread (and answered "too long")
_END_OF_DATA = b"\r\n.\r\n"
_PAUSE_AT = 256 * 1024  # buffered input that stops reading while a step is in progress
_FLUSH_AT = 64 * 1024  # replies written at once, so a client that does not read is noticed
_ABORT_AFTER = 5.0  # seconds (at most the timeout) a closing session may take to flush its last reply
_BOGUS_LIMIT = 5
_MECHANISMS = ("LOGIN", "PLAIN")
_TOO_LONG = object()  # a line that was dropped unread

CheckCredentials = Callable[[str, str], Awaitable[list[str]]]


@dataclass(frozen=True)
class ServerConfig:
    """What every session of one listener shares."""

    hostname: str
    data_size_limit: int
    timeout: float
    tls_context: ssl.SSLContext | None
    auth_require_tls: bool
    check_credentials: CheckCredentials  # login, password -> IDs of the policies they open

    @property
    def greeting(self) -> bytes:
        return f"220 {self.hostname} Conduit ESMTP\r\n".encode()


class SmtpProtocol(asyncio.Protocol):
    """One SMTP session: parses what arrives, answers, and calls ConduitHandler's hooks."""

    def __init__(self, handler: ConduitHandler, limiter: Any, config: ServerConfig) -> None:
        self.handler = handler
        self.limiter = limiter
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.envelope = Envelope()
        self._buffer = bytearray()
        self._out: list[bytes] = []
        self._out_size = 0
        self._step: asyncio.Task | None = None  # the command in progress, if it waits for something
        self._line_waiter: asyncio.Future | None = None  # an AUTH challenge awaiting its answer
        self._in_data = False
        self._data_scan = 0  # where to look for the end of data next
        self._data_too_big = False
        self._dropping_line = False  # an overlong line is being read and dropped
        self._writing_paused = False
        self._reading_paused = False
        self._closing = False
        self._eof = False
        self._tls = False
        self._counted = False
        self._bogus_budget = _BOGUS_LIMIT
        self._mail_limit = _COMMAND_LIMIT
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # --- transport callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.limiter.acquire():
            self._closing = True
            transport.write(f"{replies.TOO_MANY_SESSIONS}\r\n".encode())  # type: ignore[attr-defined]
            transport.close()
            return
        self._counted = True
        self.session = Session(transport.get_extra_info("peername"))
        self._touch()
        self._timer = self.loop.call_at(self._deadline, self._check_timeout)
        transport.write(self.config.greeting)  # type: ignore[attr-defined]

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self.limiter.release()
            self._counted = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._closing = True
        self.transport = None
        if self._step is not None:
            self._step.cancel()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._buffer += data
        self._process()

    def eof_received(self) -> bool:
        """The client is done sending: what it sent is answered, then the session closes."""
        self._eof = True
        if self._step is None or self._line_waiter is not None or self._tls:
            return False  # the transport closes (TLS cannot stay half open)
        return True

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if not self._closing:
            self._process()

    # --- the input loop ------------------------------------------------------------------

    def _process(self) -> None:
        """Answer every complete command in the buffer, in order, until one has to wait."""
        while not self._closing and not self._writing_paused:
            if self._step is not None:
                if self._line_waiter is not None:
                    self._answer_challenge()
                break
            if self._in_data:
                if not self._take_message():
                    break
                continue
            line = self._next_line()
            if line is None:
                break
            self._command(line)
            if self._out_size > _FLUSH_AT:
                self._flush()
        self._flush()
        if self._eof and self._step is None and not self._closing:
            self._close()
        self._throttle()

    def _throttle(self) -> None:
        """Stop reading while input piles up behind a step in progress or unread replies."""
        if self.transport is None:
            return
        waiting = self._step is not None or self._writing_paused
        if not self._reading_paused and waiting and len(self._buffer) > _PAUSE_AT:
            self._reading_paused = True
            self.transport.pause_reading()
        elif self._reading_paused and not waiting:
            self._reading_paused = False
            self.transport.resume_reading()

    def _next_line(self) -> bytes | object | None:
        """The next command line without its line break (a bare LF ends it too, as in
        Postfix), _TOO_LONG for one over the limit, None until a line is complete."""
        buffer = self._buffer
        end = buffer.find(b"\n")
        if end < 0:
            if len(buffer) > _LINE_LIMIT:
                self._dropping_line = True
                buffer.clear()
            return None
        if self._dropping_line or end > _LINE_LIMIT:
            self._dropping_line = False
            del buffer[:end + 1]
            return _TOO_LONG
        line = bytes(buffer[:end + 1]).rstrip(b"\r\n")
        del buffer[:end + 1]
        return line

    def _take_message(self) -> bool:
        """The message up to <CRLF>.<CRLF> (only that ends it: no bare LF, RFC 5321 4.1.1.4),
        dot-unstuffed, handed to the handler. A message over the size limit is still read and
        dropped, so that the 552 comes after the end of data (RFC 5321 4.2.5). False until the
        end of data has arrived."""
        buffer = self._buffer
        limit = self.config.data_size_limit
        end = buffer.find(_END_OF_DATA, self._data_scan)
        if end < 0:
            if self._data_too_big or len(buffer) > limit + len(_END_OF_DATA):
                self._data_too_big = True
                del buffer[:-4]  # kept: the end of data may straddle the next chunk
            self._data_scan = max(0, len(buffer) - 4)
            return False
        self._in_data = False
        # buffer: the CRLF put first at DATA, the message (its last CRLF included), ".\r\n".
        if self._data_too_big or end > limit:
            del buffer[:end + 5]
            self.envelope = Envelope()
            self._reply(replies.MESSAGE_TOO_BIG)
            return True
        message = buffer[:end + 2]
        del buffer[:end + 5]
        if b"\r\n." in message:
            message = message.replace(b"\r\n.", b"\r\n")  # a line's leading dot was doubled
        with memoryview(message) as view:
            content = bytes(view[2:])
        self.envelope.content = self.envelope.original_content = content
        self._start(self._data())
        return True

    def _command(self, line: bytes | object) -> None:
        if line is _TOO_LONG:
            self._reply(replies.LINE_TOO_LONG)
            return
        assert isinstance(line, bytes)
        if not line:
            self._reply(replies.SYNTAX_ERROR)
            return
        verb, _, arg_bytes = line.partition(b" ")
        try:
            command = verb.upper().decode("ascii")
        except UnicodeDecodeError:
            self._reply(replies.SYNTAX_ERROR)
            return
        # Not UTF-8: decoded to lone surrogates, which the commands that store arguments refuse.
        arg = str(arg_bytes.strip(), "utf-8", "surrogateescape") if arg_bytes else None
        assert self.session is not None
        limit = self._mail_limit if command == "MAIL" and self.session.extended_smtp else _COMMAND_LIMIT
        if len(line) > limit:
            self._reply(replies.LINE_TOO_LONG)
            return
        method = _COMMANDS.get(command)
        if method is None:
            self._bogus_budget -= 1
            if self._bogus_budget < 1:
                self._reply("502 5.5.1 Too many unrecognized commands, goodbye.")
                self._close()
                return
            self._reply(f'500 Error: command "{command}" not recognized')
            return
        self._touch()
        try:
            method(self, arg)
        except Exception as error:  # noqa: BLE001 - answered like a failing hook
            self._start(self._exception(error))

    # --- replies, steps, closing -----------------------------------------------------------

    def _reply(self, status: str | list[str]) -> None:
        lines = [status] if isinstance(status, str) else status
        for line in lines:
            data = line.encode("utf-8", "surrogateescape") + b"\r\n"
            self._out.append(data)
            self._out_size += len(data)

    def _flush(self) -> None:
        if self._out:
            if self.transport is not None:
                self.transport.write(b"".join(self._out))
            self._out.clear()
            self._out_size = 0

    def _start(self, step: Coroutine[Any, Any, None]) -> None:
        """Run a command that waits for something; the lines behind it wait in the buffer."""
        self._step = self.loop.create_task(self._run(step))

    async def _run(self, step: Coroutine[Any, Any, None]) -> None:
        try:
            await step
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - the handler logs it and answers 451
            await self._exception(error)
        self._step = None
        if not self._closing:
            self._process()

    async def _exception(self, error: Exception) -> None:
        try:
            status = await self.handler.handle_exception(error)
        except Exception:  # noqa: BLE001
            log.exception("event=smtp_error_handler_failed")
            status = replies.TEMPORARY_FAILURE
        self._reply(status)

    def _close(self) -> None:
        self._flush()
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def _touch(self) -> None:
        self._deadline = self.loop.time() + self.config.timeout

    def _check_timeout(self) -> None:
        """Say why before closing; a client that reads nothing cannot hold its session (and its
        place under the session cap) by leaving the last replies unflushed: it is cut."""
        if self._deadline > self.loop.time():
            self._timer = self.loop.call_at(self._deadline, self._check_timeout)
            return
        self._timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        log.info("event=smtp_timeout peer=%r", self.session.peer if self.session else None)
        self._closing = True
        transport.write(f"{replies.TIMEOUT}\r\n".encode())
        transport.close()
        self.loop.call_later(min(_ABORT_AFTER, self.config.timeout), transport.abort)

    # --- commands --------------------------------------------------------------------------

    def _refused(self, arg: str | None, hostname: bool = False) -> bool:
        """Arguments that reach the handler (and the database) are checked first: a NUL or a
        byte that is not UTF-8 made the commit fail, answered 451, and the sender retried."""
        if arg and _UNSTORABLE.search(arg):
            self._reply(replies.INVALID_CHARACTERS)
            return True
        if hostname and arg and len(arg) > _MAX_HOSTNAME:
            self._reply(replies.BAD_HOSTNAME)
            return True
        return False

    def _helo_needed(self, helo: str = "HELO") -> bool:
        assert self.session is not None
        if not self.session.host_name:
            self._reply(f"503 Error: send {helo} first")
            return True
        return False

    def smtp_HELO(self, arg: str | None) -> None:  # noqa: N802
        if self._refused(arg, hostname=True):
            return
        if not arg:
            self._reply("501 Syntax: HELO hostname")
            return
        assert self.session is not None
        self.envelope = Envelope()
        self.session.extended_smtp = False
        self.session.host_name = arg
        self._reply(f"250 {self.config.hostname}")

    def smtp_EHLO(self, arg: str | None) -> None:  # noqa: N802
        if self._refused(arg, hostname=True):
            return
        self._mail_limit = _COMMAND_LIMIT
        if not arg:
            self._reply("501 Syntax: EHLO hostname")
            return
        assert self.session is not None
        self.envelope = Envelope()
        self.session.extended_smtp = True
        self._mail_limit += _MAIL_ALLOWANCE
        config = self.config
        lines = [f"250-{config.hostname}", f"250-SIZE {config.data_size_limit}", "250-8BITMIME", "250-SMTPUTF8"]
        if config.tls_context and not self._tls:
            lines.append("250-STARTTLS")
        if not config.auth_require_tls or self._tls:
            lines.append("250-AUTH " + " ".join(_MECHANISMS))
        lines.append("250 HELP")
        self._answer(self.handler.handle_EHLO(self, self.session, self.envelope, arg, lines))

    def smtp_NOOP(self, arg: str | None) -> None:  # noqa: N802
        self._reply("250 OK")

    def smtp_QUIT(self, arg: str | None) -> None:  # noqa: N802
        if arg:
            self._reply("501 Syntax: QUIT")
            return
        self._reply("221 Bye")
        self._close()

    def smtp_RSET(self, arg: str | None) -> None:  # noqa: N802
        if arg:
            self._reply("501 Syntax: RSET")
            return
        self.envelope = Envelope()
        self._answer(self.handler.handle_RSET(self, self.session, self.envelope))

    def smtp_HELP(self, arg: str | None) -> None:  # noqa: N802
        code = 250
        if arg:
            command = arg.upper()
            if command in self._helped():
                assert self.session is not None
                extended = HELP_EXTENDED.get(command, "") if self.session.extended_smtp else ""
                self._reply(f"250 Syntax: {HELP[command]}{extended}")
                return
            code = 501
        self._reply(f"{code} Supported commands: {' '.join(self._helped())}")

    def _helped(self) -> list[str]:
        return sorted(name for name in HELP if name != "STARTTLS" or self.config.tls_context)

    def smtp_VRFY(self, arg: str | None) -> None:  # noqa: N802
        if not arg:
            self._reply("501 Syntax: VRFY <address>")
        elif parse_address(arg)[0] is None:
            self._reply(f"502 Could not VRFY {arg}")
        else:
            self._reply("252 Cannot VRFY user, but will accept message and attempt delivery")

    def smtp_EXPN(self, arg: str | None) -> None:  # noqa: N802
        self._reply("502 EXPN not implemented")

    def smtp_MAIL(self, arg: str | None) -> None:  # noqa: N802
        if self._refused(arg) or self._helo_needed():
            return
        path = self._path("MAIL", "FROM:", arg)
        if path is None:
            return
        address, rest, syntax_error = path
        if self.envelope.mail_from:  # after the path's checks, as aiosmtpd answered
            self._reply("503 Error: nested MAIL command")
            return
        parsed = self._params(rest, syntax_error)
        if parsed is None:
            return
        options, params = parsed
        if params.pop("BODY", "7BIT") not in ("7BIT", "8BITMIME"):
            self._reply("501 Error: BODY can only be one of 7BIT, 8BITMIME")
            return
        smtputf8 = params.pop("SMTPUTF8", False)
        if smtputf8 is not True and smtputf8 is not False:
            self._reply("501 Error: SMTPUTF8 takes no arguments")
            return
        self.envelope.smtp_utf8 = smtputf8
        size = params.pop("SIZE", None)
        if size:
            if size is True or not size.isdigit():
                self._reply(syntax_error)
                return
            if int(size) > self.config.data_size_limit:
                self._reply(replies.MESSAGE_TOO_BIG)
                return
        if params:
            self._reply("555 MAIL FROM parameters not recognized or not implemented")
            return
        self._answer(self.handler.handle_MAIL(self, self.session, self.envelope, address, options))

    def smtp_RCPT(self, arg: str | None) -> None:  # noqa: N802
        if self._refused(arg) or self._helo_needed():
            return
        if not self.envelope.mail_from:
            self._reply("503 Error: need MAIL command")
            return
        path = self._path("RCPT", "TO:", arg)
        if path is None:
            return
        address, rest, syntax_error = path
        parsed = self._params(rest, syntax_error)
        if parsed is None:
            return
        options, params = parsed
        if params:
            self._reply("555 RCPT TO parameters not recognized or not implemented")
            return
        self._answer(self.handler.handle_RCPT(self, self.session, self.envelope, address, options))

    def _path(self, command: str, keyword: str, arg: str | None) -> tuple[str, str | None, str] | None:
        """MAIL's and RCPT's ``<address>`` after ``keyword``: (address, the rest, the command's
        syntax-error reply), or None once the error has been answered."""
        assert self.session is not None
        extended = self.session.extended_smtp
        syntax_error = f"501 Syntax: {command} {keyword} <address>" + (HELP_EXTENDED[command] if extended else "")
        arg = strip_keyword(keyword, arg) if arg is not None else None
        if arg is None:
            self._reply(syntax_error)
            return None
        address, rest = parse_address(arg)
        if address is None:
            self._reply("553 5.1.3 Error: malformed address")
            return None
        if not address or not extended and rest:
            self._reply(syntax_error)
            return None
        return address, rest, syntax_error

    def _params(self, rest: str | None, syntax_error: str) -> tuple[list[str], dict[str, str | bool]] | None:
        """The ESMTP parameters after the path: (the options as given, upper-cased; them parsed),
        or None once a syntax error has been answered."""
        options = (rest or "").upper().split()
        params = parse_params(options)
        if params is None:
            self._reply(syntax_error)
            return None
        return options, params

    def smtp_DATA(self, arg: str | None) -> None:  # noqa: N802
        if self._helo_needed():
            return
        if not self.envelope.rcpt_tos:
            self._reply("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            self._reply("501 5.5.4 Syntax: DATA")
            return
        self._reply("354 End data with <CR><LF>.<CR><LF>")
        self._in_data = True
        self._data_too_big = False
        self._data_scan = 0
        self._buffer[:0] = b"\r\n"  # the CRLF that ended DATA: the end of data may follow at once

    async def _data(self) -> None:
        status = await self.handler.handle_DATA(self, self.session, self.envelope)
        self.envelope = Envelope()
        self._reply(status)

    def _answer(self, status: str | list[str] | Awaitable[str | list[str]]) -> None:
        """A hook's reply: at once from a plain method, when it is done from a coroutine."""
        if isinstance(status, (str, list)):
            self._reply(status)
        else:
            self._start(self._answer_later(status))

    async def _answer_later(self, status: Awaitable[str | list[str]]) -> None:
        self._reply(await status)

    # --- STARTTLS --------------------------------------------------------------------------

    def smtp_STARTTLS(self, arg: str | None) -> None:  # noqa: N802
        if arg:
            self._reply("501 Syntax: STARTTLS")
        elif not self.config.tls_context:
            self._reply("454 TLS not available")
        elif self._tls:
            self._reply("503 5.5.1 Error: TLS already active")
        else:
            self._reply("220 Ready to start TLS")
            self._start(self._starttls())

    async def _starttls(self) -> None:
        self._flush()
        # Anything sent in clear after STARTTLS is dropped, never taken as commands (RFC 3207 4.2).
        self._buffer.clear()
        transport = self.transport
        assert transport is not None and self.config.tls_context is not None
        try:
            secure = await self.loop.start_tls(transport, self, self.config.tls_context, server_side=True)
        except Exception as error:  # noqa: BLE001 - a failed handshake ends the session
            log.info("event=smtp_tls_failed peer=%r error=%r", self.session.peer if self.session else None, error)
            self._closing = True
            transport.close()
            return
        self.transport = secure  # type: ignore[assignment]
        self._tls = True
        # A new session (RFC 3207 4.2): the client says EHLO again, over TLS.
        assert self.session is not None
        self.session = Session(self.session.peer, ssl={"cipher": secure.get_extra_info("cipher"),
                                                       "peercert": secure.get_extra_info("peercert")})
        self.envelope = Envelope()
        self._touch()

    # --- AUTH (RFC 4954): PLAIN and LOGIN, checked against the policies' credentials ---------

    def smtp_AUTH(self, arg: str | None) -> None:  # noqa: N802
        if self._helo_needed("EHLO"):
            return
        assert self.session is not None
        if not self.session.extended_smtp:
            self._reply("500 Error: command 'AUTH' not recognized")
        elif self.config.auth_require_tls and not self._tls:
            self._reply("538 5.7.11 Encryption required for requested authentication mechanism")
        elif self.session.authenticated:
            self._reply("503 Already authenticated")
        elif not arg:
            self._reply("501 Not enough value")
        elif len(args := arg.split()) > 2:
            self._reply("501 Too many values")
        elif args[0] not in _MECHANISMS:
            self._reply("504 5.5.4 Unrecognized authentication type")
        else:
            self._start(self._auth(args))

    async def _auth(self, args: list[str]) -> None:
        credentials = await (self._auth_plain(args) if args[0] == "PLAIN" else self._auth_login(args))
        if credentials is None:
            return  # answered already
        login, password = (part.decode("utf-8", "replace") for part in credentials)
        # A NUL in the login failed the (PostgreSQL) query: 451, and the client tried again.
        matched = [] if _UNSTORABLE.search(login) else await self.config.check_credentials(login, password)
        if not matched:
            self._reply(replies.AUTH_FAILED)
            return
        assert self.session is not None
        self.session.authenticated = True
        self.handler.authenticated_as = login
        self.handler.authenticated_policies = frozenset(matched)
        self._reply(replies.AUTH_SUCCESS)

    async def _auth_plain(self, args: list[str]) -> tuple[bytes, bytes] | None:
        decoded = await self._challenge(b"") if len(args) == 1 else self._decode(args[1].encode())
        if decoded is None:
            return None
        try:
            _, login, password = decoded.split(b"\x00")  # authorization id, login, password (RFC 4616)
        except ValueError:
            self._reply("501 5.5.2 Can't split auth value")
            return None
        return login, password

    async def _auth_login(self, args: list[str]) -> tuple[bytes, bytes] | None:
        login = await self._challenge(b"VXNlciBOYW1lAA==") if len(args) == 1 else self._decode(args[1].encode())
        if login is None:
            return None
        password = await self._challenge(b"UGFzc3dvcmQA")  # "User Name\0", "Password\0" in base64
        if password is None:
            return None
        return login, password

    async def _challenge(self, challenge: bytes) -> bytes | None:
        """Send a 334 challenge; the client's decoded answer, None if it cancelled or garbled it."""
        self._out.append(b"334 " + challenge + b"\r\n")
        self._flush()
        self._line_waiter = self.loop.create_future()
        self._answer_challenge()  # it may have come already
        line = await self._line_waiter
        if line is _TOO_LONG:
            self._reply(replies.LINE_TOO_LONG)
            return None
        blob = line.strip()
        if blob == b"*":
            self._reply("501 5.7.0 Auth aborted")
            return None
        return self._decode(blob)

    def _answer_challenge(self) -> None:
        waiter = self._line_waiter
        if waiter is None:
            return
        line = self._next_line()
        if line is not None:
            self._line_waiter = None
            waiter.set_result(line)

    def _decode(self, blob: bytes) -> bytes | None:
        try:
            return b64decode(blob, validate=True)
        except binascii.Error:
            self._reply("501 5.5.2 Can't decode base64")
            return None


_COMMANDS: dict[str, Callable[[SmtpProtocol, str | None], None]] = {
    name[len("smtp_"):]: method for name, method in vars(SmtpProtocol).items() if name.startswith("smtp_")
}
