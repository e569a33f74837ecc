"""Conduit's SMTP server protocol, written on asyncio.Protocol: one object per connection.

aiosmtpd runs a coroutine per command on a StreamReader and inspects its handler on every
connection, which costs more CPU per message than all of Conduit's own work (docs/performance.md,
"SMTP server protocol"). Here bytes are
parsed as they arrive and replies written at once; only the steps that wait for something (a
recipient's route, the commit of a message, a password check, the TLS handshake) run in a
task, and the lines a client pipelined behind them (RFC 2920) wait in the buffer meanwhile.

This module is the connection: the transport's callbacks, the PROXY header, the input loop,
replies, steps, time-outs and closing. Framing is in conduit/smtp/framing.py, the commands and
their sequence rules in conduit/smtp/commands.py, AUTH and STARTTLS in conduit/smtp/auth.py; the
handler (conduit/smtp/contract.py's ``Handler``) decides what the mail commands answer.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any

from conduit.observability import metrics
from conduit.observability.logs import log_event
from conduit.smtp import auth, commands, proxy_protocol, replies
from conduit.smtp.contract import Envelope, Handler, Session
from conduit.smtp.framing import Dropped, InputBuffer, ReadPause
from conduit.smtp.replies import Reply

log = logging.getLogger("conduit.smtp")

_FLUSH_AT = 64 * 1024  # replies written at once, so a client that does not read is noticed
_ABORT_AFTER = 5.0  # seconds (at most the timeout) a closing session may take to flush its last reply
_LOGGED_REFUSALS = frozenset({"MAIL", "RCPT", "DATA", "AUTH"})  # a 4xx or 5xx answer to these is logged
_MAX_LOGGED_ARGUMENT = 300

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SessionLimiter:
    """The cap on concurrent sessions of one listener (CONDUIT_SMTP_MAX_SESSIONS)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def acquire(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active -= 1


@dataclass(frozen=True)
class ServerConfig:
    """What every session of one listener shares."""

    hostname: str
    data_size_limit: int
    timeout: float
    tls_context: ssl.SSLContext | None
    auth_require_tls: bool
    auth_failures_per_session: int  # wrong credentials answered 535 before the session is closed
    proxy_protocol: bool = False  # a PROXY header first, from a trusted proxy only
    trusted_proxies: tuple[IPNetwork, ...] = ()
    proxy_header_timeout: float = 10.0

    @functools.cached_property
    def greeting(self) -> bytes:
        return replies.greeting(self.hostname).wire

    @functools.cached_property
    def hello(self) -> Reply:
        return replies.hello(self.hostname)

    @functools.cached_property
    def _extended_hellos(self) -> dict[bool, Reply]:
        return {tls: replies.extended_hello(
            self.hostname, self.data_size_limit, starttls=bool(self.tls_context) and not tls,
            auth=auth.AUTH_MECHANISMS if not self.auth_require_tls or tls else None) for tls in (False, True)}

    def extended_hello(self, tls: bool) -> Reply:
        return self._extended_hellos[tls]

    def trusts(self, peer: Any) -> bool:
        """Whether the connection comes from a proxy listed in CONDUIT_TRUSTED_PROXIES."""
        try:
            address = ipaddress.ip_address(peer[0])
        except (ValueError, TypeError, IndexError):
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.trusted_proxies)


class SmtpProtocol(asyncio.Protocol):
    """One SMTP session: parses what arrives, answers, and calls the handler's hooks."""

    def __init__(self, handler: Handler, limiter: SessionLimiter, config: ServerConfig) -> None:
        self.handler = handler
        self.limiter = limiter
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.session = Session(None)
        self.envelope = Envelope()
        self.input = InputBuffer()
        self.tls = False
        self.closing = False
        self.bogus_budget = commands.BOGUS_LIMIT
        self.auth_failures = 0
        self.mail_limit = commands.COMMAND_LIMIT
        self.line_waiter: asyncio.Future[bytes | Dropped] | None = None  # an AUTH challenge awaiting its answer
        self._out: list[bytes] = []
        self._out_size = 0
        self._step: asyncio.Task[None] | None = None  # the command in progress, if it waits for something
        self._read_pause = ReadPause()
        self._writing_paused = False
        self._awaiting_proxy_header = False
        self._eof = False
        self._counted = False
        self.command = ""  # the verb being answered, for metrics and logs
        self.argument: str | None = None  # MAIL's or RCPT's argument, for the refusal log (never AUTH's)
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # --- transport callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        peer = transport.get_extra_info("peername")
        self.session.peer = peer
        if self.config.proxy_protocol and not self.config.trusts(peer):
            metrics.smtp_connection("refused_proxy")
            log.warning("event=smtp_proxy_refused peer=%r reason=not_a_trusted_proxy", peer)
            self.closing = True
            transport.close()
            return
        if not self.limiter.acquire():
            metrics.smtp_connection("refused_busy")
            self.closing = True
            transport.write(replies.TOO_MANY_SESSIONS.wire)  # type: ignore[attr-defined]
            transport.close()
            return
        self._counted = True
        metrics.smtp_connection("accepted")
        if self.config.proxy_protocol:
            self._awaiting_proxy_header = True
            self._deadline = self.loop.time() + min(self.config.proxy_header_timeout, self.config.timeout)
        else:
            self.touch()
            transport.write(self.config.greeting)  # type: ignore[attr-defined]
        self._timer = self.loop.call_at(self._deadline, self._check_timeout)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self.limiter.release()
            metrics.smtp_session_closed()
            self._counted = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.closing = True
        self.transport = None
        if self._step is not None:
            self._step.cancel()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.input.feed(data)
        if self._awaiting_proxy_header and not self._read_proxy_header():
            return
        self.process()

    def eof_received(self) -> bool:
        """The client is done sending: what it sent is answered, then the session closes."""
        self._eof = True
        # Else the transport closes at once (TLS cannot stay half open).
        return self._step is not None and self.line_waiter is None and not self.tls and not self._awaiting_proxy_header

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if not self.closing:
            self.process()

    # --- the PROXY header ----------------------------------------------------------------

    def _read_proxy_header(self) -> bool:
        """True once the header is read (the session then begins with the greeting)."""
        try:
            header = proxy_protocol.parse(self.input.data)
        except proxy_protocol.ProxyHeaderError as error:
            log.warning("event=smtp_proxy_header_invalid peer=%r reason=%r", self.session.peer, str(error))
            self._drop()
            return False
        if header is None:
            return False
        self._awaiting_proxy_header = False
        self.input.take(header.length)
        if header.source is not None:
            self.session.peer = header.source
        log.debug("event=smtp_proxied proxy_version=%d client=%r", header.version, self.session.peer)
        self.touch()
        assert self.transport is not None
        self.transport.write(self.config.greeting)
        return True

    # --- the input loop ------------------------------------------------------------------

    def process(self) -> None:
        """Answer every complete command in the buffer, in order, until one has to wait."""
        buffer = self.input
        while not self.closing and not self._writing_paused:
            if self._step is not None:
                if self.line_waiter is not None:
                    self.answer_challenge()
                break
            if buffer.in_data:
                message = buffer.take_message(self.config.data_size_limit)
                if message is None:
                    break
                commands.message(self, message)
                continue
            line = buffer.next_line()
            if line is None:
                break
            commands.dispatch(self, line)
            if self._out_size > _FLUSH_AT:
                self.flush()
        self.flush()
        if self._eof and self._step is None and not self.closing:
            self.close()
        if self.transport is not None:
            self._read_pause.update(self.transport, len(buffer), self._step is not None or self._writing_paused)

    # --- replies, steps, closing -----------------------------------------------------------

    def reply(self, reply: Reply) -> None:
        data = reply.wire
        self._out.append(data)
        self._out_size += len(data)
        metrics.smtp_reply(self.command, reply.code, reply.reason)
        if reply.code >= 400 and self.command in _LOGGED_REFUSALS:
            self._log_refusal(reply)

    def _log_refusal(self, reply: Reply) -> None:
        fields = {"command": self.command, "code": reply.code, "reason": reply.reason, "reply": reply.lines[0],
                  "client_ip": self.session.remote_ip}
        if self.argument is not None and self.command in ("MAIL", "RCPT"):
            fields["argument"] = self.argument[:_MAX_LOGGED_ARGUMENT]
        log_event(log, logging.INFO, "smtp_refused", **fields)

    def flush(self) -> None:
        if self._out:
            if self.transport is not None:
                self.transport.write(b"".join(self._out))
            self._out.clear()
            self._out_size = 0

    def start(self, step: Coroutine[Any, Any, None]) -> None:
        """Run a command that waits for something; the lines behind it wait in the buffer."""
        self._step = self.loop.create_task(self._run(step))

    def start_reply(self, reply: Awaitable[Reply]) -> None:
        """A step whose whole work is to wait for its reply."""
        self.start(self._reply_later(reply))

    async def _reply_later(self, reply: Awaitable[Reply]) -> None:
        self.reply(await reply)

    async def _run(self, step: Coroutine[Any, Any, None]) -> None:
        try:
            await step
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - the handler logs it and answers 451
            self.failed(error)
        self._step = None
        if not self.closing:
            self.process()

    def failed(self, error: Exception) -> None:
        try:
            reply = self.handler.failed(error)
        except Exception:
            log.exception("event=smtp_error_handler_failed")
            reply = replies.TEMPORARY_FAILURE
        self.reply(reply)

    def close(self) -> None:
        self.flush()
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def _drop(self) -> None:
        """Close without a word: the peer is a proxy that broke the PROXY protocol."""
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def touch(self) -> None:
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
        if self._awaiting_proxy_header:
            log.warning("event=smtp_proxy_header_timeout peer=%r", self.session.peer)
            self._drop()
            return
        log.info("event=smtp_timeout peer=%r", self.session.peer)
        self.closing = True
        transport.write(replies.TIMEOUT.wire)
        transport.close()
        self.loop.call_later(min(_ABORT_AFTER, self.config.timeout), transport.abort)

    # --- AUTH challenges: a line read outside the command loop ----------------------------

    async def read_answer(self, challenge: Reply) -> bytes | Dropped:
        """Send a 334 challenge; the client's next line."""
        self.reply(challenge)
        self.flush()
        self.line_waiter = self.loop.create_future()
        self.answer_challenge()  # it may have come already
        return await self.line_waiter

    def answer_challenge(self) -> None:
        waiter = self.line_waiter
        if waiter is None:
            return
        line = self.input.next_line()
        if line is not None:
            self.line_waiter = None
            waiter.set_result(line)

    # --- STARTTLS: the same protocol object goes on over TLS --------------------------------

    async def start_tls(self) -> bool:
        """The TLS handshake after STARTTLS's 220; False (and the session closed) if it failed."""
        self.flush()
        # Anything sent in clear after STARTTLS is dropped, never taken as commands (RFC 3207 4.2).
        self.input.clear()
        transport = self.transport
        assert transport is not None and self.config.tls_context is not None
        try:
            secure = await self.loop.start_tls(transport, self, self.config.tls_context, server_side=True)
        except Exception as error:  # noqa: BLE001 - a failed handshake ends the session
            log.info("event=smtp_tls_failed peer=%r error=%r", self.session.peer, error)
            self.closing = True
            transport.close()
            return False
        assert secure is not None
        self.transport = secure
        self.tls = True
        # A new session (RFC 3207 4.2): the client says EHLO again, over TLS.
        self.session = Session(self.session.peer, tls={"cipher": secure.get_extra_info("cipher"),
                                                       "peercert": secure.get_extra_info("peercert")})
        self.envelope = Envelope()
        self.touch()
        return True

