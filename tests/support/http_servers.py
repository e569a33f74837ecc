"""Real HTTP servers on loopback for the webhook transport tests, and the fixtures that build
the transport under test (both of them: ``transport_kind``) against them.

- ``Receiver``: an aiohttp server (plain or TLS) with one route per behaviour (``/ok``,
  ``/error``, ``/hang``, ``/big``...), recording each request with its peer address;
- ``RawServer``: an HTTP/1.1 server on asyncio streams that answers scripted bytes, for
  framing, keep-alive and proxy answers no well-behaved server library would send.

The fixtures are made available to tests/integration by its conftest.py.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Self

import pytest
import trustme
from aiohttp import web

from conduit.net.dns import make_resolver
from conduit.net.http_aiohttp import AiohttpTransport
from conduit.net.http_client import WebhookClient
from conduit.net.http_transport import WebhookTransport
from tests.support.dns_server import LoopbackDNS

BIG_BODY_BYTES = 10 * 1024 * 1024
TRANSPORTS: dict[str, type[WebhookClient | AiohttpTransport]] = {"fast": WebhookClient, "aiohttp": AiohttpTransport}
MakeTransport = Callable[..., WebhookTransport]
BODY = b'{"event":"email.received"}'
HEADERS = {"Content-Type": "application/json", "webhook-id": "msg_1", "X-Custom": "yes"}


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records what it was sent."""

    port: int = 0
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    big_body_finished: bool | None = None
    big_body_done: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    @property
    def paths(self) -> list[str]:
        return [path for path, _, _ in self.requests]


def receiver_app(receiver: Receiver) -> web.Application:
    async def record(request: web.Request) -> None:
        headers = dict(request.headers) | {"X-Peer": str(request.transport.get_extra_info("peername"))}
        receiver.requests.append((request.path, headers, await request.read()))

    async def ok(request: web.Request) -> web.Response:
        await record(request)
        response = web.Response(status=202, text="accepted")
        response.set_cookie("session", "from-the-receiver")
        return response

    async def error(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=500, text="boom")

    async def unavailable(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=503, headers={"Retry-After": "120"}, text="later")

    async def hang(request: web.Request) -> web.Response:
        await record(request)
        await receiver.release.wait()  # set at teardown
        return web.Response(text="too late")

    async def slow(request: web.Request) -> web.Response:
        await record(request)
        await asyncio.sleep(0.3)
        return web.Response(text="slow but fine")

    async def big(request: web.Request) -> web.StreamResponse:
        await record(request)
        response = web.StreamResponse()
        response.content_length = BIG_BODY_BYTES
        await response.prepare(request)
        chunk = b"x" * 65536
        receiver.big_body_finished = False
        try:
            for _ in range(BIG_BODY_BYTES // len(chunk)):
                await response.write(chunk)
            receiver.big_body_finished = True
        except (ConnectionError, RuntimeError):
            pass  # the client hung up, as it should
        finally:
            receiver.big_body_done.set()
        return response

    async def truncated(request: web.Request) -> web.StreamResponse:
        await record(request)
        response = web.StreamResponse()
        response.content_length = 1000
        await response.prepare(request)
        await response.write(b"only ten b")
        request.transport.close()  # mid-body
        return response

    async def redirect(request: web.Request) -> web.Response:
        await record(request)
        raise web.HTTPFound(location="/ok")

    async def long_error(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=502, text="\n \n" + "€" * 2000 + "\nsecond line", content_type="text/html")

    async def not_found(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=404, body=b"")

    async def odd_status(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=599, text="bad\x00 news\r\nmore")

    app = web.Application()
    for path, handler in [("/ok", ok), ("/error", error), ("/unavailable", unavailable), ("/hang", hang),
                          ("/slow", slow), ("/big", big), ("/truncated", truncated), ("/redirect", redirect),
                          ("/long-error", long_error), ("/not-found", not_found), ("/odd-status", odd_status)]:
        app.router.add_post(path, handler)
    return app


@asynccontextmanager
async def serving(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Receiver]:
    """A ``Receiver`` listening on 127.0.0.1 (TLS with ``ssl_context``)."""
    receiver = Receiver()
    runner = web.AppRunner(receiver_app(receiver), shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
    receiver.port = runner.addresses[0][1]
    try:
        yield receiver
    finally:
        receiver.release.set()
        await runner.cleanup()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
HANG_UP = b""  # in a script: close the connection after reading the request, without answering
CLOSE = b"<close>"  # at the end of a scripted answer: close the connection after sending it


class RawServer:
    """An HTTP/1.1 server on loopback written against asyncio streams: it answers each request
    with the next scripted bytes (then ``OK``), keeps connections open unless told (``CLOSE``),
    and records every request and every connection."""

    def __init__(self, *script: bytes) -> None:
        self.script = list(script)
        self.requests: list[bytes] = []
        self.connections: list[asyncio.StreamWriter] = []
        self.gate: asyncio.Event | None = None  # when set up, requests wait for it before the answer
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hook"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.gate is not None:
            self.gate.set()
        for writer in self.connections:
            writer.close()
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                self.requests.append(head + await reader.readexactly(int(length.group(1)) if length else 0))
                answer = self.script.pop(0) if self.script else OK
                if answer == HANG_UP:
                    return
                if self.gate is not None:
                    await self.gate.wait()
                writer.write(answer.removesuffix(CLOSE))
                await writer.drain()
                if answer.endswith(CLOSE):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_receiver(ca: trustme.CA) -> AsyncIterator[Receiver]:
    """A ``Receiver`` on TLS, its certificate for ``localhost`` and ``127.0.0.1`` from ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    async with serving(context) as receiver:
        yield receiver


@pytest.fixture
def trusting(ca: trustme.CA) -> ssl.SSLContext:
    """A client TLS context that trusts ``ca``."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture(params=list(TRANSPORTS))
def transport_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def make(transport_kind: str, dns_server: LoopbackDNS) -> AsyncIterator[MakeTransport]:
    """Builds the transport under test with the loopback DNS server and short timeouts (each
    test's bound); closes what it built at the end."""
    made: list[WebhookTransport] = []

    def build(**options: object) -> WebhookTransport:
        options = {"resolver": make_resolver(dns_server.servers), "connect_timeout": 2, "total_timeout": 2} | options
        transport = TRANSPORTS[transport_kind](**options)  # type: ignore[arg-type]
        made.append(transport)
        return transport

    yield build
    for transport in made:
        await transport.close()


@pytest.fixture
def client(make: MakeTransport) -> WebhookTransport:
    """Private targets allowed (the receiver is on loopback)."""
    return make(allow_private=True)


@pytest.fixture
def guarded(make: MakeTransport) -> WebhookTransport:
    """The production setting: only public addresses."""
    return make()
