"""The HTTP client that POSTs deliveries: a small hand-written HTTP/1.1 client, pooled,
bounded in time and in what it reads, guarded against SSRF.

Why hand-written: aiohttp's client machinery (session, connector, request and response
objects, stream readers, tracing hooks) was ~13 % of all CPU samples at 4 KiB messages and
~20 % of the delivery worker, the bottleneck process. A delivery needs one thing: POST a
ready body, read the status, ``Retry-After`` and a bounded excerpt. Measured with uvloop,
20,000 POSTs of 4 KiB JSON from 50 concurrent tasks to ``bench/receiver.py`` on loopback,
CPU seconds of the client process (``time.process_time``, kernel time included) per
1,000 POSTs, three runs each: aiohttp 3.14 0.098-0.127 (median 0.106), this client
0.025-0.029 (median 0.027), about a quarter; most of what is left is the send() system call.

What it does: ``loop.create_connection`` with an ``asyncio.Protocol``
(``conduit.delivery.http_connection``) that parses responses with httptools; keep-alive
connections pooled per (scheme, host, port), reused last-in first-out, at most ``pool_size``
open in all, idle ones closed after 15 s; TLS with certificate and host name verification;
Content-Length, chunked and read-until-close bodies; 1xx interim responses skipped.
What it does not do: HTTP/2, proxies (environment variables are ignored), redirects (a 3xx
is the outcome, "redirect not followed"), cookies, compression (``Accept-Encoding:
identity``, so the 64 KiB read bound is a bound on memory too), pipelining, Expect: 100-continue.

Retries: a reused keep-alive connection that fails before any byte of the response arrived
(the receiver closed it while it sat idle, and we wrote into the closing socket) is retried
once, at once, on a new connection. The receiver may in rare races have received that first
request; Standard Webhooks receivers deduplicate on ``webhook-id``, which is the same on
both attempts. A fresh connection that fails is never retried here (the delivery schedule
decides).

SSRF: host names are resolved with dnspython (honouring CONDUIT_DNS_SERVERS) by
``GuardedResolver``, which refuses a name when any of its addresses is loopback, private,
link-local or otherwise non-public; the connection then goes to exactly the addresses that
were checked, in order, so a name that changes its answer between the check and the
connection (DNS rebinding) gains nothing. IP-literal hosts are checked the same way without
DNS; the legacy inet_aton() forms (``127.1``, ``2130706433``) are refused: as forbidden
targets when they denote one, otherwise as invalid URLs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import dns.asyncresolver
import idna

import conduit
from conduit.config import Settings
from conduit.delivery.http_connection import HttpConnection, IncompleteBody, InvalidResponse, NoResponse, Response
from conduit.net.addresses import IPAddress, is_forbidden_target, parse_host_ip
from conduit.net.dns import DnsLookupError, make_resolver, resolve_addresses

log = logging.getLogger("conduit.delivery")

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = f"Conduit/{conduit.__version__}"
IDLE_TIMEOUT = 15.0  # seconds an unused keep-alive connection stays open
_LOCALHOST = ("127.0.0.1", "::1")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))  # keep printable ASCII (and escapes), quote the rest
_OVERRIDABLE = frozenset({"user-agent", "accept-encoding"})
_CLIENT_OWNED = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_MAX_CACHED_TARGETS = 1024


class ForbiddenTargetError(OSError):
    """The target resolves to an address Conduit must not connect to."""


class TargetResolutionError(OSError):
    """The target's host name has no usable address."""


class InvalidTargetURL(ValueError):
    """The URL is not one this client can POST to."""


class ConnectTimeout(Exception):
    """Resolving, connecting and the TLS handshake took longer than ``connect_timeout``."""


class ConnectError(Exception):
    """Every checked address of the host refused or failed the connection (or TLS)."""

    def __init__(self, host: str, port: int, errors: list[OSError]) -> None:
        self.host = host
        self.port = port
        self.errors = errors
        first = errors[0]
        if len(errors) == 1 or all(str(error) == str(first) for error in errors):
            reason = first.strerror or str(first)
        else:
            reason = "Multiple exceptions: " + ", ".join(str(error) for error in errors)
        super().__init__(f"could not connect to {host}:{port}: {reason}")


@dataclass(frozen=True)
class HttpOutcome:
    """One POST's result. ``status`` is None when no complete response arrived and
    ``error`` then says why; ``response_excerpt`` is at most 64 KiB of the body, decoded
    as UTF-8 with replacements; ``retry_after`` is the raw ``Retry-After`` header."""

    status: int | None
    duration_ms: int
    error: str | None
    response_excerpt: str
    retry_after: str | None


def forbidden_reason(host: str, address: IPAddress) -> str:
    """The delivery-log sentence for a refused target (wording as at save time)."""
    what = f"{address} is" if parse_host_ip(host) is not None else f"{host} resolves to {address},"
    return (
        f"refused: {what} a loopback, private, link-local or reserved address; "
        "Conduit only delivers to public addresses"
    )


class GuardedResolver:
    """Resolves a webhook host with dnspython and refuses it when any address is non-public."""

    def __init__(self, resolver: dns.asyncresolver.Resolver, *, allow_private: bool = False) -> None:
        self._resolver = resolver
        self._allow_private = allow_private

    async def resolve(self, host: str) -> list[IPAddress]:
        """The addresses to connect to, in order; ``ForbiddenTargetError`` or
        ``TargetResolutionError`` (both carrying the delivery-log sentence) otherwise."""
        addresses = await self._addresses(host)
        if not self._allow_private:
            forbidden = [a for a in addresses if is_forbidden_target(a)]
            if forbidden:
                raise ForbiddenTargetError(forbidden_reason(host, forbidden[0]))
        return addresses

    async def _addresses(self, host: str) -> list[IPAddress]:
        name = host.rstrip(".").lower()
        if name == "localhost" or name.endswith(".localhost"):
            # RFC 6761: loopback by definition, and not in DNS (dnspython skips /etc/hosts).
            return [ipaddress.ip_address(ip) for ip in _LOCALHOST]
        try:
            return await resolve_addresses(self._resolver, host)
        except DnsLookupError as exc:
            raise TargetResolutionError(f"could not resolve {host}: {exc.reason}") from None


@dataclass(frozen=True)
class _Target:
    """A parsed target URL, cached per URL: where to connect and the request's first lines."""

    key: tuple[str, str, int]  # (scheme, host, port): the pool's key
    host: str  # IDNA-encoded, without brackets: for DNS, TLS and error sentences
    port: int
    tls: bool
    literal: IPAddress | None
    refusal: str | None  # the SSRF sentence for a forbidden IP literal
    head: str  # request line, Host and the request target, up to the client's own headers


class _Pool:
    """Keep-alive connections per key, LIFO, and the count of open ones (at most ``size``).

    A slot is taken before connecting and belongs to the connection until it closes; a
    caller that finds no idle connection and no free slot closes an idle connection to
    another host, or waits for a connection to be released or closed.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.open = 0
        self._idle: dict[tuple[str, str, int], list[HttpConnection]] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._connections: set[HttpConnection] = set()

    async def acquire(self, key: tuple[str, str, int], *, fresh: bool = False) -> HttpConnection | None:
        """An idle connection for ``key``, or None with a slot reserved for a new one
        (always the latter when ``fresh``)."""
        while True:
            idle = self._idle.get(key)
            while idle and not fresh:
                conn = idle.pop()
                if not conn.closed:
                    return conn
            if self.open < self.size:
                self.open += 1
                return None
            if self._close_an_idle_connection():
                continue
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # we were woken but will not use it: pass it on
                raise
            finally:
                if not waiter.done():
                    waiter.cancel()
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass

    def attach(self, conn: HttpConnection, key: tuple[str, str, int]) -> None:
        """``conn`` now owns the slot reserved by ``acquire``."""
        conn.key = key
        conn.on_close = self._closed
        self._connections.add(conn)
        if conn.closed:  # closed before we could take it over
            self._closed(conn)

    def release_slot(self) -> None:
        """A reserved slot that did not become a connection."""
        self.open -= 1
        self._wake()

    def put(self, conn: HttpConnection) -> None:
        """Keep ``conn`` for the next request to its host."""
        loop = conn.loop
        conn.idle_since = loop.time()
        self._idle.setdefault(conn.key, []).append(conn)  # type: ignore[arg-type]
        if self._sweeper is None:
            self._sweeper = loop.call_later(IDLE_TIMEOUT / 3, self._sweep)
        if self._waiters:
            self._wake()

    def _closed(self, conn: HttpConnection) -> None:
        """``conn`` closed (either side): its slot is free."""
        self.open -= 1
        self._connections.discard(conn)
        idle = self._idle.get(conn.key)  # type: ignore[arg-type]
        if idle and conn in idle:
            idle.remove(conn)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _close_an_idle_connection(self) -> bool:
        oldest: HttpConnection | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is None:
            return False
        oldest.close()
        return True

    def _sweep(self) -> None:
        self._sweeper = None
        now = None
        remaining = False
        for key, idle in list(self._idle.items()):
            for conn in list(idle):
                now = now if now is not None else conn.loop.time()
                if now - conn.idle_since >= IDLE_TIMEOUT:
                    conn.close()
            if not idle:
                del self._idle[key]
            else:
                remaining = True
        if remaining:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(IDLE_TIMEOUT / 3, self._sweep)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._connections):
            conn.close()
        self._idle.clear()


class WebhookClient:
    """POSTs deliveries over pooled keep-alive connections.

    ``post`` never raises (except on cancellation): every failure is an ``HttpOutcome``
    with ``status=None`` and a sentence in ``error``. Redirects are not followed (a 3xx
    is reported as such), cookies are never stored, proxies from the environment are not
    used, and responses are not decompressed (``Accept-Encoding: identity``) so the
    64 KiB read bound is a bound on memory too. ``ssl_context`` replaces the default
    (system CAs, host name checked), e.g. to trust a test CA.
    """

    def __init__(
        self,
        *,
        resolver: dns.asyncresolver.Resolver | None = None,
        allow_private: bool = False,
        connect_timeout: float = 5.0,
        total_timeout: float = 15.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        pool_size: int = 100,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._guard = GuardedResolver(resolver if resolver is not None else make_resolver([]),
                                      allow_private=allow_private)
        self._allow_private = allow_private
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._max_response_bytes = max_response_bytes
        self._pool = _Pool(pool_size)
        self._ssl_context = ssl_context
        self._targets: dict[str, _Target] = {}

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> HttpOutcome:
        started = time.monotonic()
        try:
            target = self._targets.get(url)
            if target is None:
                target = self._target(url)
            if target.refusal is not None:
                return self._outcome(started, None, target.refusal)
            request = self._request(target, body, headers)
            if isinstance(request, str):
                return self._outcome(started, None, request)
            async with asyncio.timeout(self._total_timeout):
                response = await self._exchange(target, request)
            status = response.status
            error = "redirect not followed" if 300 <= status < 400 else None
            excerpt = response.body.decode("utf-8", errors="replace") if response.body else ""
            return self._outcome(started, status, error, excerpt, response.retry_after)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
            return self._outcome(started, None, self._describe(exc))

    @staticmethod
    def _outcome(started: float, status: int | None, error: str | None, excerpt: str = "",
                 retry_after: str | None = None) -> HttpOutcome:
        return HttpOutcome(status, int((time.monotonic() - started) * 1000), error, excerpt, retry_after)

    # -- the exchange ---------------------------------------------------------------------

    async def _exchange(self, target: _Target, request: bytes) -> Response:
        conn = await self._pool.acquire(target.key)
        if conn is None:
            conn = await self._connect(target)
            return await self._round_trip(conn, request)
        try:
            return await self._round_trip(conn, request)
        except NoResponse as exc:
            if exc.received:
                raise
        # The idle connection was closed by the receiver: once more, on a new connection.
        await self._pool.acquire(target.key, fresh=True)  # reserves a slot, never returns an idle one
        conn = await self._connect(target)
        return await self._round_trip(conn, request)

    async def _round_trip(self, conn: HttpConnection, request: bytes) -> Response:
        try:
            response = await conn.send(request, self._max_response_bytes)
        except BaseException:
            conn.close()
            raise
        if response.reusable and not conn.closed:
            self._pool.put(conn)
        else:
            conn.close()
        return response

    async def _connect(self, target: _Target) -> HttpConnection:
        """A new connection in the slot ``acquire`` reserved (released again on failure)."""
        try:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    if target.literal is not None:
                        addresses = [target.literal]
                    else:
                        addresses = await self._guard.resolve(target.host)
                    conn = await self._open(target, addresses)
            except TimeoutError:
                raise ConnectTimeout() from None
        except BaseException:
            self._pool.release_slot()
            raise
        self._pool.attach(conn, target.key)
        return conn

    async def _open(self, target: _Target, addresses: list[IPAddress]) -> HttpConnection:
        loop = asyncio.get_running_loop()
        context = None
        if target.tls:
            if self._ssl_context is None:
                self._ssl_context = ssl.create_default_context()
            context = self._ssl_context
        errors: list[OSError] = []
        for address in addresses:
            try:
                _, conn = await loop.create_connection(
                    lambda: HttpConnection(loop), str(address), target.port,
                    ssl=context, server_hostname=target.host if context is not None else None,
                )
                return conn
            except ssl.SSLError as exc:  # the host's certificate or TLS setup: no other address fixes that
                raise ConnectError(target.host, target.port, [exc]) from None
            except OSError as exc:
                errors.append(exc)
        raise ConnectError(target.host, target.port, errors)

    # -- the request ----------------------------------------------------------------------

    def _target(self, url: str) -> _Target:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise InvalidTargetURL(str(exc)) from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise InvalidTargetURL(f"{url} (not an http:// or https:// URL)")
        host = parts.hostname or ""
        if not host or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in host):
            raise InvalidTargetURL(f"{url} (no valid host)")
        if port == 0:
            raise InvalidTargetURL("Port out of range 1-65535")
        if port is None:
            port = _DEFAULT_PORTS[scheme]
        literal = parse_host_ip(host)
        refusal = None
        if literal is not None:
            if not self._allow_private and is_forbidden_target(literal):
                refusal = forbidden_reason(host, literal)
            elif ":" not in host:
                try:
                    ipaddress.IPv4Address(host)
                except ValueError:  # 127.1, 2130706433, 0x7f.0.0.1: not what a URL should say
                    raise InvalidTargetURL(f"{host} - is not a canonical IPv4 address") from None
            host = host.split("%", 1)[0]
            host_header = f"[{host}]" if ":" in host else host
        else:
            if not host.isascii():
                try:
                    host = idna.encode(host, uts46=True, transitional=False).decode("ascii")
                except idna.IDNAError as exc:
                    raise InvalidTargetURL(f"{url} (invalid host name: {exc})") from None
            host_header = host
        if port != _DEFAULT_PORTS[scheme]:
            host_header = f"{host_header}:{port}"
        path = parts.path or "/"
        if not (path.isascii() and path.isprintable()) or " " in path:
            path = quote(path, safe=_URL_SAFE)
        if parts.query:
            query = parts.query
            if not (query.isascii() and query.isprintable()) or " " in query:
                query = quote(query, safe=_URL_SAFE)
            path = f"{path}?{query}"
        head = f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\n"
        target = _Target((scheme, host, port), host, port, scheme == "https", literal, refusal, head)
        if len(self._targets) >= _MAX_CACHED_TARGETS:
            self._targets.clear()
        self._targets[url] = target
        return target

    @staticmethod
    def _request(target: _Target, body: bytes, headers: dict[str, str]) -> bytes | str:
        """The request's bytes, or the sentence refusing a header (CR, LF, NUL; owned by the client)."""
        given = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        count = len(headers)
        if given.count("\r") != count or given.count("\n") != count or "\0" in given:
            for name, value in headers.items():
                if any(ch in text for text in (name, value) for ch in "\r\n\0"):
                    return f"refused: the header {name!r} contains CR, LF or NUL"
        user_agent = accept_encoding = True
        for name in headers:
            lowered = name.lower()
            if lowered in _OVERRIDABLE:
                if lowered == "user-agent":
                    user_agent = False
                else:
                    accept_encoding = False
            elif lowered in _CLIENT_OWNED:
                return f"refused: the header {name!r} is set by the HTTP client"
        head = target.head
        if user_agent:
            head += f"User-Agent: {USER_AGENT}\r\n"
        if accept_encoding:
            head += "Accept-Encoding: identity\r\n"
        head += f"Content-Length: {len(body)}\r\n{given}\r\n"
        return head.encode("utf-8") + body

    # -- errors ---------------------------------------------------------------------------

    def _describe(self, exc: Exception) -> str:
        """One sentence for the delivery log."""
        if isinstance(exc, (ForbiddenTargetError, TargetResolutionError, ConnectError)):
            return str(exc)
        if isinstance(exc, ConnectTimeout):
            return f"could not connect within {self._connect_timeout:g} s (timeout)"
        if isinstance(exc, TimeoutError):
            return f"no complete response within {self._total_timeout:g} s (timeout)"
        if isinstance(exc, IncompleteBody):
            return "the connection was closed before the response body was complete"
        if isinstance(exc, NoResponse):
            sentence = "the server closed the connection without sending a complete response"
            return sentence + (f" ({exc.os_error})" if exc.os_error is not None else "")
        if isinstance(exc, InvalidTargetURL):
            return f"invalid target URL: {exc}"
        if isinstance(exc, InvalidResponse):
            return f"HTTP error: invalid response: {exc}"
        if isinstance(exc, OSError):
            return f"HTTP error: {type(exc).__name__}: {exc}"
        log.warning("event=delivery_unexpected_error error=%s", type(exc).__name__, exc_info=exc)
        return f"unexpected error: {type(exc).__name__}: {exc}"

    async def close(self) -> None:
        self._pool.close()


def delivery_client(settings: Settings) -> WebhookClient:
    """The client as configured: CONDUIT_DNS_SERVERS, CONDUIT_ALLOW_PRIVATE_TARGETS, timeouts."""
    return WebhookClient(resolver=make_resolver(settings.dns_server_list, settings.dns_timeout),
                         allow_private=settings.allow_private_targets,
                         connect_timeout=settings.delivery_connect_timeout, total_timeout=settings.delivery_timeout)
