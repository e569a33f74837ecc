"""The SMTP listener: aiosmtpd's protocol with Conduit's limits, STARTTLS and database-backed AUTH."""

from __future__ import annotations

import asyncio
import collections
import functools
import inspect
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any, AnyStr

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword, _AuthMechAttr, login_always_fail, syntax
from sqlalchemy import select

from conduit.db.models import SmtpPolicy
from conduit.services.crypto import verify_password
from conduit.smtp import replies
from conduit.smtp.handler import ConduitHandler, SmtpContext

log = logging.getLogger("conduit.smtp")

# Control characters, and lone surrogates: aiosmtpd's stand-ins for bytes that are not UTF-8.
# No SMTP argument contains them, and neither database can store them all (NUL, surrogates).
_UNSTORABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_MAX_HOSTNAME = 255  # the column that keeps HELO, and RFC 1035's limit
_END_OF_DATA = b"\r\n.\r\n"
_ABORT_AFTER = 5.0  # seconds (at most the timeout) a closing session may take to flush its last reply
# "<local@domain>" with both parts plain ASCII dot-atoms (RFC 5321 4.1.2), then the parameters.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_PLAIN_PATH = re.compile(rf"<({_ATEXT}+(?:\.{_ATEXT}+)*@{_ATEXT}+(?:\.{_ATEXT}+)*)>[ \t]*(.*)", re.DOTALL)


class _Pending:
    """Credentials decoded by aiosmtpd's AUTH PLAIN/LOGIN, awaiting our (async) check."""

    def __init__(self, credentials: LoginPassword) -> None:
        self.credentials = credentials


def _refusing_unstorable(command: Callable[[SMTP, str | None], Awaitable[None]]) -> Callable:
    """Arguments that reach the handler (and the database) are checked first: a NUL or a
    byte that is not UTF-8 made the commit fail, answered 451, and the sender retried."""
    @functools.wraps(command)  # keeps aiosmtpd's HELP text (@syntax)
    async def checked(self: ConduitSMTP, arg: str | None) -> None:
        if arg and _UNSTORABLE.search(arg):
            await self.push(replies.INVALID_CHARACTERS)
        elif arg and command.__name__ in ("smtp_HELO", "smtp_EHLO") and len(arg) > _MAX_HOSTNAME:
            await self.push(replies.BAD_HOSTNAME)
        else:
            if command.__name__ == "smtp_EHLO":
                self.command_size_limits.clear()  # EHLO adds SIZE and SMTPUTF8's allowance again
            await command(self, arg)
    return checked


@dataclass(frozen=True)
class _Tables:
    """What aiosmtpd's SMTP.__init__ looks up by introspection on every connection (0.13 ms of
    inspect.getmembers, dir and inspect.signature), by name: found once per pair of protocol and
    handler classes by ``_tables``, bound to each session's objects with getattr."""

    commands: tuple[tuple[str, str], ...]  # ("MAIL", "smtp_MAIL")
    mechanisms: tuple[tuple[str, str, bool], ...]  # ("PLAIN", "auth_PLAIN", defined by the protocol)
    hooks: tuple[tuple[str, str], ...]  # ("RCPT", "handle_RCPT")
    ehlo_hook_ver: str | None


@functools.cache
def _tables(protocol: type[SMTP], handler: type) -> _Tables:
    """As aiosmtpd finds them (aiosmtpd/smtp.py, SMTP.__init__), from the classes."""
    mechanisms: dict[str, tuple[str, bool]] = {}
    for owner, builtin in ((protocol, True), (handler, False)):
        for name in sorted(n for n in dir(owner) if n.startswith("auth_")):
            default = name.replace("auth_", "").replace("__", "-")
            mechanisms[getattr(getattr(owner, name), "__auth_mechanism_name__", default)] = (name, builtin)
    hooks = tuple((name.replace("handle_", ""), name) for name in dir(handler) if name.startswith("handle_"))
    ehlo_hook_ver = None
    if hasattr(handler, "handle_EHLO"):  # the bound hook's arguments: the method's less self
        ehlo_hook_ver = {4: "old", 5: "new"}.get(len(inspect.signature(handler.handle_EHLO).parameters) - 1)
        if ehlo_hook_ver is None:
            raise RuntimeError("Unsupported EHLO Hook")
    return _Tables(
        commands=tuple((name.replace("smtp_", ""), name) for name in dir(protocol) if name.startswith("smtp_")),
        mechanisms=tuple((mechanism, name, builtin) for mechanism, (name, builtin) in mechanisms.items()),
        hooks=hooks, ehlo_hook_ver=ehlo_hook_ver)


class ConduitSMTP(SMTP):
    """aiosmtpd's SMTP with a cap on concurrent sessions, AUTH checked against the database,
    and hostile input answered (see tests/e2e/test_smtp_fuzz.py).

    aiosmtpd calls its authenticator synchronously, but checking a password means a database
    query and an Argon2 verification: its mechanisms hand us the credentials, we check them here.
    """

    smtp_HELO = _refusing_unstorable(SMTP.smtp_HELO)  # noqa: N815 - aiosmtpd's names
    smtp_EHLO = _refusing_unstorable(SMTP.smtp_EHLO)  # noqa: N815
    smtp_MAIL = _refusing_unstorable(SMTP.smtp_MAIL)  # noqa: N815
    smtp_RCPT = _refusing_unstorable(SMTP.smtp_RCPT)  # noqa: N815

    def __init__(self, handler: ConduitHandler, limiter: SessionLimiter, *, hostname: str, ident: str,
                 data_size_limit: int, tls_context: ssl.SSLContext | None, timeout: float,
                 auth_require_tls: bool) -> None:
        """What aiosmtpd's SMTP.__init__ sets up for Conduit's options (SMTPUTF8, bytes, STARTTLS
        and AUTH offered but not required), with its per-connection introspection done once per
        class (_Tables). tests/unit/test_smtp_setup.py checks that both set up the same."""
        loop = asyncio.get_running_loop()
        asyncio.StreamReaderProtocol.__init__(self, asyncio.StreamReader(loop=loop, limit=self.line_length_limit),
                                              client_connected_cb=self._cb_client_connected, loop=loop)
        self.__ident__ = ident
        self.loop = loop
        self.event_handler = handler
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = True
        self._decode_data = False
        # aiosmtpd keeps the per-command line limits in a class attribute, shared by every
        # session, and raises MAIL's on every EHLO: each session gets its own here.
        self.command_size_limits = collections.defaultdict(lambda: self.command_size_limit)
        self.hostname = hostname
        self.tls_context = tls_context
        self.require_starttls = False
        self._timeout_duration = timeout
        self._timeout_handle = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = auth_require_tls
        self._proxy_timeout = None
        self._auth_callback = login_always_fail  # unused: _authenticate below is called instead
        self._authenticator = None
        self._auth_required = False
        self._enforce_call_limit = False
        tables = _tables(type(self), type(handler))
        self._smtp_methods = {command: getattr(self, name) for command, name in tables.commands}
        self._auth_methods = {mechanism: _AuthMechAttr(getattr(self if builtin else handler, name), builtin)
                              for mechanism, name, builtin in tables.mechanisms}
        self._handle_hooks = {hook: getattr(handler, name) for hook, name in tables.hooks}
        self._ehlo_hook_ver = tables.ehlo_hook_ver
        self.conduit_handler = handler
        self.limiter = limiter
        self._counted = False

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's reading of MAIL FROM's and RCPT TO's path. The plain ``<local@domain>`` nearly
        all mail uses is read by a regular expression (1 µs; aiosmtpd took 46 µs a path); anything
        else goes to the stdlib's parser as in aiosmtpd (it decodes an RFC 2047 "=?", skips a
        comment after the path). tests/unit/test_smtp_setup.py checks both read every path alike."""
        if not arg:
            return "", ""
        plain = _PLAIN_PATH.fullmatch(arg)
        if plain is not None and "=?" not in plain[1] and not plain[2].startswith("("):
            address, rest = plain[1], plain[2]
        else:
            try:
                path, rest = get_angle_addr(arg) if arg.lstrip().startswith("<") else get_addr_spec(arg)
            except HeaderParseError:
                return None, None
            address = path.addr_spec
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            status = replies.AIOSMTPD_REWORDED.get(status, status)
        await super().push(status)

    def _timeout_cb(self) -> None:
        """Say why before closing; a client that reads nothing cannot hold its session (and its
        place under the session cap) by leaving the last replies unflushed: it is cut."""
        if self.transport is None or self.transport.is_closing():
            return
        log.info("event=smtp_timeout peer=%r", self.session.peer if self.session else None)
        transport = self.transport
        transport.write(f"{replies.TIMEOUT}\r\n".encode())
        transport.close()
        self.loop.call_later(min(_ABORT_AFTER, self._timeout_duration), transport.abort)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:  # noqa: N802
        """aiosmtpd's DATA, keeping the message in one buffer: aiosmtpd keeps a bytearray per
        line (about 60 bytes each), so a message of empty lines cost 80 times its size. Lines
        longer than RFC 5321's 1000 octets are taken as they are (aiosmtpd answered 500)."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        content = await self._read_message()
        if content is None:
            self._set_post_data_state()
            await self.push(replies.MESSAGE_TOO_BIG)
            return
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def _read_message(self) -> bytes | None:
        """The message up to <CRLF>.<CRLF> (only that ends it: no bare LF, RFC 5321 4.1.1.4),
        dot-unstuffed. None when it is over the size limit: the rest is still read, and dropped,
        so that the 552 comes after the end of data (RFC 5321 4.2.5)."""
        limit = self.data_size_limit or float("inf")
        # The CRLF that ended the DATA command: the end of data may follow it at once.
        buffer = bytearray(b"\r\n")
        too_big = False
        while not buffer.endswith(_END_OF_DATA):
            try:
                # Ends every line that is a dot; whether a CRLF came before it is checked above.
                chunk = await self._reader.readuntil(b".\r\n")
            except asyncio.LimitOverrunError as overrun:  # no dot line in the reader's buffer yet
                chunk = await self._reader.read(overrun.consumed)
            except asyncio.IncompleteReadError:  # the client hung up mid-message
                if self.transport is not None:
                    self.transport.close()
                raise asyncio.CancelledError from None
            buffer += chunk
            if too_big or len(buffer) > limit + len(_END_OF_DATA):
                too_big = True
                del buffer[: -len(_END_OF_DATA)]  # kept: the end of data may straddle the next chunk
        del buffer[-3:]  # the terminating ".\r\n"; its CRLF ends the last line
        if too_big or len(buffer) - 2 > limit:
            return None
        if b"\r\n." in buffer:
            buffer = buffer.replace(b"\r\n.", b"\r\n")  # a line's leading dot was doubled
        with memoryview(buffer) as content:
            return bytes(content[2:])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # STARTTLS calls this again for the same session
        if first and not self.limiter.acquire():
            transport.write(f"{replies.TOO_MANY_SESSIONS}\r\n".encode())
            transport.close()
            return
        self._counted = self._counted or first
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self.limiter.release()
            self._counted = False
        if self.session is not None:
            super().connection_lost(error)

    def _authenticate(self, mechanism: str, auth_data: Any) -> Any:
        return _Pending(auth_data)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:  # noqa: N802
        return await self._finish_auth(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:  # noqa: N802
        return await self._finish_auth(await super().auth_LOGIN(_, args))

    async def _finish_auth(self, result: Any) -> AuthResult:
        if not isinstance(result, _Pending):
            return result  # aiosmtpd already answered (bad base64, aborted challenge)
        login = result.credentials.login.decode("utf-8", "replace")
        password = result.credentials.password.decode("utf-8", "replace")
        # A NUL in the login failed the (PostgreSQL) query: 451, and the client tried again.
        matched = [] if _UNSTORABLE.search(login) else await _policies_for(self.conduit_handler.ctx, login, password)
        if not matched:
            return AuthResult(success=False, handled=False, message=replies.AUTH_FAILED)
        self.conduit_handler.authenticated_as = login
        self.conduit_handler.authenticated_policies = frozenset(matched)
        return AuthResult(success=True, handled=False, auth_data=result.credentials, message=replies.AUTH_SUCCESS)


async def _policies_for(ctx: SmtpContext, login: str, password: str) -> list[str]:
    """IDs of the policies whose SMTP credentials are login:password."""
    async with ctx.sessions() as db:
        candidates = (await db.execute(select(SmtpPolicy.id, SmtpPolicy.smtp_password_hash)
                                       .where(SmtpPolicy.smtp_username == login))).all()
    return [policy_id for policy_id, password_hash in candidates
            if password_hash and await verify_password(password_hash, password)]


class SessionLimiter:
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


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def start(ctx: SmtpContext) -> asyncio.Server:
    settings = ctx.settings
    tls = tls_context(settings.smtp_tls_cert, settings.smtp_tls_key) if settings.smtp_tls_cert else None
    limiter = SessionLimiter(settings.smtp_max_sessions)

    def factory() -> ConduitSMTP:
        return ConduitSMTP(
            ConduitHandler(ctx), limiter, hostname=settings.smtp_hostname, ident="Conduit ESMTP",
            data_size_limit=settings.smtp_max_message_bytes, tls_context=tls, timeout=settings.smtp_timeout,
            auth_require_tls=not settings.smtp_auth_insecure,
        )

    server = await asyncio.get_running_loop().create_server(factory, host=settings.smtp_host, port=settings.smtp_port)
    log.info("event=role_started role=smtp host=%s port=%s tls=%s", settings.smtp_host, settings.smtp_port, bool(tls))
    return server
