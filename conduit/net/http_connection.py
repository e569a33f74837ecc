"""One keep-alive HTTP/1.1 client connection for the webhook client (``conduit.net.http_client``).

An ``asyncio.Protocol`` that writes a ready-made request and parses the response with
``httptools.HttpResponseParser`` as bytes arrive, keeping only what a delivery log needs:
the status, the few headers a delivery log keeps, at most ``limit`` bytes of the body and
whether the connection may carry another request. Interim 1xx responses are skipped. A body that reaches ``limit``
bytes without being complete ends the exchange at once, and the connection is dropped
instead of drained.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httptools

_NO_BODY_STATUSES = (204, 304)
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})
_PROXY_MARKS = frozenset({b"x-smokescreen-error", b"proxy-status"})  # a proxy's own answer (conduit.net.http_proxy)
SMTP_REASON = b"x-conduit-smtp-reason"  # a synchronous webhook's refusal text (its SMTP reply)
_MARKS = _PROXY_MARKS | {SMTP_REASON}


class ResponseError(Exception):
    """No usable response arrived on the connection."""


class NoResponse(ResponseError):
    """The connection ended before a complete response head. ``received`` says whether any
    byte of a response arrived (a reused connection that got none may be retried)."""

    def __init__(self, received: bool, os_error: BaseException | None) -> None:
        super().__init__("the connection closed before a response" + (f" ({os_error})" if os_error else ""))
        self.received = received
        self.os_error = os_error


class IncompleteBody(ResponseError):
    """The connection ended inside the response body."""


class InvalidResponse(ResponseError):
    """The bytes received are not an HTTP/1.x response."""


class Response:
    """What the delivery log keeps of a response: the status, the first ``Retry-After``,
    ``Content-Type`` and ``X-Conduit-Smtp-Reason``, the marks of a proxy's own answer (``X-Smokescreen-Error``,
    ``Proxy-Status``; None when absent), the body up to the bound; ``reusable`` says whether
    the connection may carry another request (complete body, keep-alive)."""

    __slots__ = ("body", "content_type", "proxy_status", "retry_after", "reusable", "smokescreen_error",
                 "smtp_reason", "status")

    def __init__(self, status: int, retry_after: str | None, content_type: str | None,
                 marks: dict[bytes, str] | None, body: bytes, reusable: bool) -> None:
        self.status = status
        self.retry_after = retry_after
        self.content_type = content_type
        self.smokescreen_error = marks.get(b"x-smokescreen-error") if marks else None
        self.proxy_status = marks.get(b"proxy-status") if marks else None
        self.smtp_reason = marks.get(SMTP_REASON) if marks else None
        self.body = body
        self.reusable = reusable


class HttpConnection(asyncio.Protocol):
    """One connection; at most one request in flight (no pipelining).

    ``on_close`` is called once, when the connection is closed by either side (the pool's
    slot accounting). ``idle_since`` is set by the pool while the connection is idle.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.on_close: Callable[[HttpConnection], None] | None = None
        self.idle_since = 0.0
        self.key: tuple[str, str, int] | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._limit = 0
        self._received = False
        self._reset_message()

    def _reset_message(self) -> None:
        self._status = 0
        self._retry_after: str | None = None
        self._content_type: str | None = None
        self._marks: dict[bytes, str] | None = None
        self._framed = False  # Content-Length or Transfer-Encoding: the body does not end at EOF
        self._head_done = False  # a final (non-1xx) response head arrived
        self._keep_alive = False
        self._chunks: list[bytes] = []
        self._size = 0
        self._truncated = False

    # -- the caller's side ------------------------------------------------------------

    def send(self, data: bytes, limit: int) -> asyncio.Future[Response]:
        """Write one request; the future resolves to its response or a ``ResponseError``."""
        waiter = self.loop.create_future()
        self._waiter = waiter
        self._limit = limit
        self._received = False
        self._reset_message()
        self.transport.write(data)  # type: ignore[union-attr]
        return waiter

    def close(self) -> None:
        """Drop the connection now (no draining, no graceful TLS shutdown)."""
        if self.transport is not None:
            self.transport.abort()
        self._closed()

    def _closed(self) -> None:
        if not self.closed:
            self.closed = True
            if self.on_close is not None:
                self.on_close(self)

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection is out of step
            self.close()
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(InvalidResponse("unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(InvalidResponse(str(exc) or type(exc).__name__))
        if self._waiter is not None and self._head_done and self._size >= self._limit:
            # The bound is reached and the body goes on: stop here rather than wait for more.
            self._truncated = True
            self._finish(reusable=False)
        if self._truncated or (self._idle and not self._keep_alive):
            self.close()

    @property
    def _idle(self) -> bool:
        """No response is awaited: the parser's callbacks may have finished it during ``feed_data``."""
        return self._waiter is None

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None:
            if not self._head_done:
                self._fail(NoResponse(self._received, exc))
            elif not self._framed and not self._truncated:
                self._finish(reusable=False)  # the body was delimited by the end of the connection
            else:
                self._fail(IncompleteBody())
        self._closed()

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._waiter is None:
            raise InvalidResponse("a response nobody asked for")
        self._reset_message()

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"content-type":
            if self._content_type is None:
                self._content_type = value.decode("latin-1")
        elif lowered in _FRAMING:
            self._framed = True
        elif lowered == b"retry-after":
            if self._retry_after is None:
                self._retry_after = value.decode("latin-1")
        elif lowered in _MARKS:
            if self._marks is None:
                self._marks = {}
            self._marks.setdefault(lowered, value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        self._status = status
        if status >= 200:
            self._head_done = True
            self._keep_alive = self._parser.should_keep_alive()
            if status in _NO_BODY_STATUSES:
                self._framed = True

    def on_body(self, body: bytes) -> None:
        if self._truncated:
            return
        self._chunks.append(body)
        self._size += len(body)
        if self._size > self._limit:
            self._truncated = True
            self._finish(reusable=False)

    def on_message_complete(self) -> None:
        if self._status < 200:  # 100 Continue, 103 Early Hints...: the final response follows
            return
        if not self._truncated:
            self._finish(reusable=self._keep_alive)

    # -- results ------------------------------------------------------------------------

    def _finish(self, *, reusable: bool) -> None:
        waiter = self._waiter
        self._waiter = None
        if not reusable:
            self._keep_alive = False
        if waiter is not None and not waiter.done():
            chunks = self._chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            if len(body) > self._limit:
                body = body[: self._limit]
            waiter.set_result(Response(self._status, self._retry_after, self._content_type, self._marks, body,
                                       reusable))
        self._chunks = []

    def _fail(self, error: ResponseError) -> None:
        waiter = self._waiter
        self._waiter = None
        self._keep_alive = False
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        if not self.closed and self.transport is not None:
            self.transport.abort()
