"""Deliveries through an egress proxy (``CONDUIT_HTTP_PROXY``), such as smokescreen, that
decides which destinations webhooks may reach.

How a request goes through it, in both transports: an https target through a ``CONNECT``
tunnel (the TLS session is end to end, the certificate checked against the target's name);
an http target as an absolute-form request (``POST http://host/path HTTP/1.1``), as aiohttp,
curl and Go send it and smokescreen accepts it.

What is the proxy's and what is the receiver's: a ``CONNECT`` that is not answered 2xx is the
proxy's refusal, so is any failure to reach the proxy. An absolute-form request is answered
by the proxy in the receiver's place, so its refusals are recognised by what marks them as
the proxy's own: status 407, smokescreen's ``X-Smokescreen-Error`` header, or an RFC 9209
``Proxy-Status`` header with an ``error`` parameter. Any other answer counts as the
receiver's (a proxy that refuses an http target with a plain 403 looks like a receiver
answering 403). A refusal recognised as the proxy's is an attempt without a response
(``status`` None): retried on the delivery schedule.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import httptools

from conduit.net.http_target import Target
from conduit.net.http_transport import USER_AGENT, reason_phrase

_MAX_REPLY_HEAD = 16 * 1024


class ProxyConnectError(OSError):
    """The proxy could not be reached (resolved, connected to) within the connect timeout."""


class ProxyRefused(Exception):
    """The proxy answered for the target instead of forwarding to it."""


class TunnelClosed(Exception):
    """The proxy closed the connection before answering the ``CONNECT`` completely."""


@dataclass(frozen=True)
class EgressProxy:
    """The proxy every delivery goes through."""

    host: str
    port: int
    username: str | None
    password: str | None

    @property
    def url(self) -> str:
        """Without credentials (they go in ``authorization``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` value (Basic) when the URL carries credentials."""
        if self.username is None:
            return None
        pair = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


def parse_proxy_url(value: str) -> EgressProxy:
    """``http://[user:password@]host[:port]``; ValueError saying what is wrong otherwise."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"is not a proxy URL ({exc})") from None
    if parts.scheme.lower() != "http":
        raise ValueError("must be an http:// URL of a forward proxy, e.g. http://127.0.0.1:4750")
    if not parts.hostname:
        raise ValueError("names no proxy host, e.g. http://127.0.0.1:4750")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be the proxy's address only, without a path, e.g. http://127.0.0.1:4750")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return EgressProxy(parts.hostname, port or 80, username, password)


def connect_request(target: Target, proxy: EgressProxy) -> bytes:
    """The ``CONNECT`` that opens a tunnel to an https target."""
    head = f"CONNECT {target.authority} HTTP/1.1\r\nHost: {target.authority}\r\nUser-Agent: {USER_AGENT}\r\n"
    if proxy.authorization is not None:
        head += f"Proxy-Authorization: {proxy.authorization}\r\n"
    return (head + "\r\n").encode("ascii")


def refusal_sentence(target: Target, status: int, reason: str, detail: str | None) -> str:
    """The delivery log's sentence for a proxy that did not forward the request."""
    reason = " ".join(reason.split()) or reason_phrase(status)
    sentence = f"the proxy did not forward the request to {target.authority}: HTTP {status} {reason}".rstrip()
    return f"{sentence} ({detail})" if detail else sentence


def own_answer(status: int, smokescreen_error: str | None, proxy_status: str | None) -> str | None:
    """For an absolute-form request: the proxy's own refusal (its detail, or "" when only the
    status says so), or None when the answer is the receiver's."""
    if smokescreen_error is not None:
        return smokescreen_error
    if proxy_status is not None and "error=" in proxy_status:
        return proxy_status
    if status == 407:
        return ""
    return None


@dataclass(frozen=True)
class TunnelReply:
    status: int
    reason: str
    smokescreen_error: str | None


class TunnelHandshake(asyncio.Protocol):
    """Reads the proxy's answer to ``CONNECT`` (its head only); the connection then carries TLS."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: asyncio.Transport | None = None
        self.reply: asyncio.Future[TunnelReply] = loop.create_future()
        self._buffer = bytearray()
        self._parser = httptools.HttpResponseParser(self)
        self._reason = ""
        self._smokescreen_error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while not self.reply.done():
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > _MAX_REPLY_HEAD:
                    self._fail(ProxyRefused("the proxy's answer to CONNECT has no end of headers"))
                return
            head = bytes(self._buffer[: end + 4])
            del self._buffer[: end + 4]
            try:
                self._parser.feed_data(head)  # a head: on_headers_complete answers or skips a 1xx
            except httptools.HttpParserError as exc:
                self._fail(ProxyRefused(f"the proxy's answer to CONNECT is not HTTP: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(TunnelClosed(str(exc) if exc else ""))

    def _fail(self, error: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(error)

    # httptools callbacks

    def on_status(self, reason: bytes) -> None:
        self._reason += reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-smokescreen-error" and self._smokescreen_error is None:
            self._smokescreen_error = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status >= 200 and not self.reply.done():
            self.reply.set_result(TunnelReply(status, self._reason, self._smokescreen_error))
        else:  # a 1xx before the real answer: its fields are not the answer's
            self._reason = ""
            self._smokescreen_error = None
