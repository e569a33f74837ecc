"""Conduit's own webhook HTTP client, the default transport (``conduit.net.http_transport``):
a small HTTP/1.1 client, pooled, bounded in time and in what it reads, guarded against SSRF.

Why it exists: the delivery worker is the process that bounds Conduit's throughput, and its
work per delivery ends in one POST of a ready body. A general client's machinery (session,
connector, request and response objects, stream readers, tracing hooks) costs several times
the CPU per POST of a client that does only what a delivery needs: write one prepared
request, read the status, a few headers and a bounded excerpt. Its reference is the aiohttp transport
(``conduit.net.http_aiohttp``): the same test suite runs against both, so any behaviour of
this client can be checked against a well-kept library. The measurement is in
docs/performance.md; ``bench/http_transport_cpu.py`` repeats it for either transport.

What it does: ``loop.create_connection`` with an ``asyncio.Protocol``
(``conduit.net.http_connection``) that parses responses with httptools; keep-alive
connections pooled per (scheme, host, port), reused last-in first-out, at most ``pool_size``
open in all, idle ones closed after 15 s; TLS with certificate and host name verification;
Content-Length, chunked and read-until-close bodies; 1xx interim responses skipped; an egress
proxy when one is configured (``conduit.net.http_proxy``: CONNECT for https targets,
absolute-form requests for http ones). What it does not do: HTTP/2, proxies from environment
variables, redirects (a 3xx is the outcome, "redirect not followed"), cookies, compression
(``Accept-Encoding: identity``, so the 64 KiB read bound is a bound on memory too),
pipelining, Expect: 100-continue.

Retries: a reused keep-alive connection that fails before any byte of the response arrived
(the receiver closed it while it sat idle, and we wrote into the closing socket) is retried
once, at once, on a new connection. The receiver may in rare races have received that first
request; Standard Webhooks receivers deduplicate on ``webhook-id``, which is the same on
both attempts. A fresh connection that fails is never retried here (the delivery schedule
decides).

SSRF: see ``conduit.net.http_target``; a connection goes to exactly the addresses that
``GuardedResolver`` checked.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

import dns.asyncresolver

from conduit.net.addresses import IPAddress
from conduit.net.dns import make_resolver
from conduit.net.http_connection import (
    HttpConnection,
    IncompleteBody,
    InvalidResponse,
    NoResponse,
    Response,
)
from conduit.net.http_proxy import (
    EgressProxy,
    ProxyConnectError,
    ProxyRefused,
    TunnelClosed,
    TunnelHandshake,
    connect_request,
    own_answer,
    parse_proxy_url,
    refusal_sentence,
)
from conduit.net.http_target import (
    ForbiddenTargetError,
    GuardedResolver,
    InvalidTargetURL,
    Target,
    TargetResolutionError,
    inspect_headers,
    parse_target,
)
from conduit.net.http_transport import (
    IDLE_TIMEOUT,
    MAX_RESPONSE_BYTES,
    USER_AGENT,
    ConnectError,
    HttpOutcome,
    failure,
    response_outcome,
)

__all__ = ["MAX_RESPONSE_BYTES", "ConnectError", "HttpOutcome", "WebhookClient"]

log = logging.getLogger("conduit.delivery")

_MAX_CACHED_TARGETS = 1024
_P = TypeVar("_P", bound=asyncio.BaseProtocol)


class ConnectTimeout(Exception):
    """Resolving, connecting and the TLS handshake took longer than ``connect_timeout``."""


class _Prepared:
    """A target as this client sends to it, cached per URL: the request's first lines."""

    __slots__ = ("head", "target", "to_proxy")

    def __init__(self, target: Target, head: str, to_proxy: bool) -> None:
        self.target = target
        self.head = head  # request line, Host (and Proxy-Authorization), up to the client's own headers
        self.to_proxy = to_proxy  # an absolute-form request: the proxy reads its headers


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
    """POSTs deliveries over pooled keep-alive connections (a ``WebhookTransport``).

    ``post`` never raises (except on cancellation): every failure is an ``HttpOutcome``
    with ``status=None`` and a sentence in ``error``. Redirects are not followed (a 3xx
    is reported as such), cookies are never stored, proxies from the environment are not
    used (``proxy`` is the one proxy, ``CONDUIT_HTTP_PROXY``), and responses are not
    decompressed (``Accept-Encoding: identity``) so the read bound is a bound on memory too.
    ``ssl_context`` replaces the default (system CAs, host name checked), e.g. to trust a
    test CA.
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
        proxy: str | None = None,
    ) -> None:
        resolver = resolver if resolver is not None else make_resolver([])
        self._guard = GuardedResolver(resolver, allow_private=allow_private)
        self._allow_private = allow_private
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._max_response_bytes = max_response_bytes
        self._pool = _Pool(pool_size)
        self._ssl_context = ssl_context
        self._targets: dict[str, _Prepared] = {}
        self._proxy = parse_proxy_url(proxy) if proxy else None
        # The proxy is the operator's own: its name may resolve to a private address.
        self._proxy_resolver = GuardedResolver(resolver, allow_private=True)

    async def post(self, url: str, body: bytes, headers: dict[str, str], *,
                   timeout: float | None = None) -> HttpOutcome:
        started = time.monotonic()
        limit = self._total_timeout if timeout is None else timeout
        try:
            prepared = self._targets.get(url)
            if prepared is None:
                prepared = self._prepare(url)
            target = prepared.target
            if target.refusal is not None:
                return failure(started, target.refusal)
            request = self._request(prepared, body, headers)
            if isinstance(request, str):
                return failure(started, request)
            async with asyncio.timeout(limit):
                response = await self._exchange(target, request)
            if prepared.to_proxy:
                detail = own_answer(response.status, response.smokescreen_error, response.proxy_status)
                if detail is not None:  # the proxy answered in the receiver's place
                    return failure(started, refusal_sentence(target, response.status, "", detail))
            return response_outcome(started, response.status, response.body, response.retry_after,
                                    response.content_type, response.smtp_reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
            return failure(started, self._describe(exc, limit))

    # -- the exchange ---------------------------------------------------------------------

    async def _exchange(self, target: Target, request: bytes) -> Response:
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

    async def _connect(self, target: Target) -> HttpConnection:
        """A new connection in the slot ``acquire`` reserved (released again on failure)."""
        try:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    if self._proxy is not None:
                        conn = await self._open_through_proxy(target, self._proxy)
                    else:
                        conn = await self._open_direct(target)
            except TimeoutError:
                raise ConnectTimeout() from None
        except BaseException:
            self._pool.release_slot()
            raise
        self._pool.attach(conn, target.key)
        return conn

    async def _open_direct(self, target: Target) -> HttpConnection:
        if target.literal is not None:
            addresses = [target.literal]
        else:
            addresses = await self._guard.resolve(target.host)
        loop = asyncio.get_running_loop()
        context = self._tls_context() if target.tls else None
        _, conn = await _open(target.host, target.port, addresses, lambda: HttpConnection(loop),
                              context=context, server_hostname=target.host)
        return conn

    async def _open_through_proxy(self, target: Target, proxy: EgressProxy) -> HttpConnection:
        """A connection to the proxy: for an http target, one that carries absolute-form
        requests; for an https target, a CONNECT tunnel with TLS to the target inside."""
        try:
            addresses = await self._proxy_resolver.resolve(proxy.host)
        except TargetResolutionError as exc:
            raise ProxyConnectError(f"could not connect to the proxy {proxy.host}:{proxy.port}: {exc}") from None
        loop = asyncio.get_running_loop()
        if not target.tls:
            _, conn = await _open(proxy.host, proxy.port, addresses, lambda: HttpConnection(loop),
                                  what="the proxy ")
            return conn
        transport, handshake = await _open(proxy.host, proxy.port, addresses, lambda: TunnelHandshake(loop),
                                           what="the proxy ")
        try:
            transport.write(connect_request(target, proxy))
            reply = await handshake.reply
            if not 200 <= reply.status < 300:
                raise ProxyRefused(refusal_sentence(target, reply.status, reply.reason, reply.smokescreen_error))
            conn = HttpConnection(loop)
            try:
                tls = await loop.start_tls(transport, conn, self._tls_context(), server_hostname=target.host)
            except OSError as exc:  # ssl.SSLError included: the target's certificate or TLS setup
                raise ConnectError(target.host, target.port, [exc]) from None
            if tls is None:
                raise TunnelClosed("the tunnel closed during the TLS handshake")
            conn.connection_made(tls)
            return conn
        except BaseException:
            transport.abort()
            raise

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    # -- the request ----------------------------------------------------------------------

    def _prepare(self, url: str) -> _Prepared:
        target = parse_target(url, allow_private=self._allow_private, proxied=self._proxy is not None)
        to_proxy = self._proxy is not None and not target.tls
        if self._proxy is not None and to_proxy:
            head = f"POST {target.absolute_url} HTTP/1.1\r\nHost: {target.host_header}\r\n"
            if self._proxy.authorization is not None:
                head += f"Proxy-Authorization: {self._proxy.authorization}\r\n"
        else:
            head = f"POST {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
        prepared = _Prepared(target, head, to_proxy)
        if len(self._targets) >= _MAX_CACHED_TARGETS:
            self._targets.clear()
        self._targets[url] = prepared
        return prepared

    @staticmethod
    def _request(prepared: _Prepared, body: bytes, headers: dict[str, str]) -> bytes | str:
        """The request's bytes, or the sentence refusing a header."""
        refusal, user_agent, accept_encoding, lines = inspect_headers(headers, to_proxy=prepared.to_proxy)
        if refusal is not None:
            return refusal
        head = prepared.head
        if user_agent:
            head += f"User-Agent: {USER_AGENT}\r\n"
        if accept_encoding:
            head += "Accept-Encoding: identity\r\n"
        head += f"Content-Length: {len(body)}\r\n{lines}\r\n"
        return head.encode("utf-8") + body

    # -- errors ---------------------------------------------------------------------------

    def _describe(self, exc: Exception, limit: float) -> str:
        """One sentence for the delivery log (``limit``: the POST's total timeout)."""
        if isinstance(exc, (ForbiddenTargetError, TargetResolutionError, ConnectError, ProxyConnectError,
                            ProxyRefused)):
            return str(exc)
        if isinstance(exc, ConnectTimeout):
            return f"could not connect within {self._connect_timeout:g} s (timeout)"
        if isinstance(exc, TimeoutError):
            return f"no complete response within {limit:g} s (timeout)"
        if isinstance(exc, IncompleteBody):
            return "the connection was closed before the response body was complete"
        if isinstance(exc, NoResponse):
            sentence = "the server closed the connection without sending a complete response"
            return sentence + (f" ({exc.os_error})" if exc.os_error is not None else "")
        if isinstance(exc, TunnelClosed):
            return "the proxy closed the connection without answering CONNECT" + (f" ({exc})" if str(exc) else "")
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


async def _open(host: str, port: int, addresses: list[IPAddress], factory: Callable[[], _P], *,
                context: ssl.SSLContext | None = None, server_hostname: str | None = None,
                what: str = "") -> tuple[asyncio.Transport, _P]:
    """A connection to the first of ``addresses`` that accepts; ``ConnectError`` naming ``what``
    and ``host:port`` otherwise (at once on a TLS error: no other address fixes the certificate)."""
    loop = asyncio.get_running_loop()
    errors: list[OSError] = []
    for address in addresses:
        try:
            return await loop.create_connection(
                factory, str(address), port, ssl=context,
                server_hostname=server_hostname if context is not None else None)
        except ssl.SSLError as exc:
            raise ConnectError(host, port, [exc], what=what) from None
        except OSError as exc:
            errors.append(exc)
    raise ConnectError(host, port, errors, what=what)
