"""The delivery HTTP client against real aiohttp servers, a bare asyncio HTTP server and the
loopback DNS server: outcomes, bounds, keep-alive, TLS and the SSRF guard, without mocks and
without timing assertions."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import trustme
from aiohttp import web

import conduit
from conduit.delivery.http import MAX_RESPONSE_BYTES, WebhookClient
from conduit.net.dns import make_resolver
from tests.support.dns_server import LoopbackDNS

pytestmark = pytest.mark.timeout(30)

BIG_BODY_BYTES = 10 * 1024 * 1024


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


def _app(receiver: Receiver) -> web.Application:
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

    app = web.Application()
    for path, handler in [("/ok", ok), ("/error", error), ("/unavailable", unavailable), ("/hang", hang),
                          ("/slow", slow), ("/big", big), ("/truncated", truncated), ("/redirect", redirect)]:
        app.router.add_post(path, handler)
    return app


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    runner = web.AppRunner(_app(receiver), shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.port = runner.addresses[0][1]
    yield receiver
    receiver.release.set()
    await runner.cleanup()


@pytest.fixture
async def client(dns_server: LoopbackDNS) -> AsyncIterator[WebhookClient]:  # noqa: F811
    """Private targets allowed (the receiver is on loopback); short timeouts bound each test."""
    client = WebhookClient(
        resolver=make_resolver(dns_server.servers), allow_private=True, connect_timeout=2, total_timeout=2
    )
    yield client
    await client.close()


@pytest.fixture
async def guarded(dns_server: LoopbackDNS) -> AsyncIterator[WebhookClient]:  # noqa: F811
    """The production setting: only public addresses."""
    client = WebhookClient(resolver=make_resolver(dns_server.servers), connect_timeout=2, total_timeout=2)
    yield client
    await client.close()


BODY = b'{"event":"email.received"}'
HEADERS = {"Content-Type": "application/json", "webhook-id": "msg_1", "X-Custom": "yes"}


# -- outcomes ------------------------------------------------------------------------


async def test_2xx_delivers_body_and_headers(client: WebhookClient, receiver: Receiver):
    outcome = await client.post(receiver.url("/ok"), BODY, HEADERS)
    assert (outcome.status, outcome.error, outcome.response_excerpt) == (202, None, "accepted")
    assert outcome.duration_ms >= 0
    [(path, headers, body)] = receiver.requests
    assert body == BODY
    assert headers["User-Agent"] == f"Conduit/{conduit.__version__}"
    assert headers["Content-Type"] == "application/json"
    assert headers["webhook-id"] == "msg_1"
    assert headers["X-Custom"] == "yes"


async def test_connections_are_reused(client: WebhookClient, receiver: Receiver):
    for _ in range(3):
        assert (await client.post(receiver.url("/ok"), BODY, HEADERS)).status == 202
    assert len(receiver.requests) == 3
    assert len({headers["X-Peer"] for _, headers, _ in receiver.requests}) == 1  # one connection


async def test_cookies_are_never_sent_back_and_responses_not_compressed(client: WebhookClient, receiver: Receiver):
    await client.post(receiver.url("/ok"), BODY, HEADERS)
    await client.post(receiver.url("/ok"), BODY, HEADERS)
    assert all("Cookie" not in headers for _, headers, _ in receiver.requests)
    assert receiver.requests[0][1]["Accept-Encoding"] == "identity"


async def test_500_is_an_outcome_with_the_body(client: WebhookClient, receiver: Receiver):
    outcome = await client.post(receiver.url("/error"), BODY, HEADERS)
    assert (outcome.status, outcome.error, outcome.response_excerpt) == (500, None, "boom")


async def test_retry_after_is_passed_on(client: WebhookClient, receiver: Receiver):
    outcome = await client.post(receiver.url("/unavailable"), BODY, HEADERS)
    assert (outcome.status, outcome.retry_after) == (503, "120")


async def test_hanging_receiver_times_out(client: WebhookClient, receiver: Receiver):
    outcome = await client.post(receiver.url("/hang"), BODY, HEADERS)
    assert outcome.status is None
    assert "timeout" in outcome.error
    assert receiver.paths == ["/hang"]


async def test_slow_receiver_within_the_timeout_is_fine(client: WebhookClient, receiver: Receiver):
    outcome = await client.post(receiver.url("/slow"), BODY, HEADERS)
    assert (outcome.status, outcome.error, outcome.response_excerpt) == (200, None, "slow but fine")


async def test_large_response_is_read_only_up_to_the_bound(client: WebhookClient, receiver: Receiver):
    outcome = await client.post(receiver.url("/big"), BODY, HEADERS)
    assert (outcome.status, outcome.error) == (200, None)
    assert outcome.response_excerpt == "x" * MAX_RESPONSE_BYTES
    # The client hung up instead of reading 10 MB: the server could not send it all.
    await asyncio.wait_for(receiver.big_body_done.wait(), timeout=10)
    assert receiver.big_body_finished is False
    # The pool is still usable after a dropped connection.
    assert (await client.post(receiver.url("/ok"), BODY, HEADERS)).status == 202


async def test_connection_closed_mid_response(client: WebhookClient, receiver: Receiver):
    outcome = await client.post(receiver.url("/truncated"), BODY, HEADERS)
    assert outcome.status is None
    assert "closed" in outcome.error


async def test_redirect_is_not_followed(client: WebhookClient, receiver: Receiver):
    outcome = await client.post(receiver.url("/redirect"), BODY, HEADERS)
    assert (outcome.status, outcome.error) == (302, "redirect not followed")
    assert receiver.paths == ["/redirect"]


async def test_connection_refused(client: WebhookClient, receiver: Receiver):
    port = receiver.port
    receiver.port = _closed_port()
    outcome = await client.post(receiver.url("/ok"), BODY, HEADERS)
    assert outcome.status is None
    assert "could not connect" in outcome.error
    receiver.port = port


async def test_unresolvable_host(client: WebhookClient, receiver: Receiver):
    outcome = await client.post(receiver.url("/ok", host="nowhere.test"), BODY, HEADERS)
    assert outcome.status is None
    assert outcome.error.startswith("could not resolve nowhere.test")


async def test_invalid_url_is_an_outcome(client: WebhookClient):
    outcome = await client.post("not a url", BODY, HEADERS)
    assert outcome.status is None
    assert outcome.error


# -- SSRF guard ----------------------------------------------------------------------


async def test_name_resolving_to_loopback_is_refused(
    guarded: WebhookClient, receiver: Receiver, dns_server: LoopbackDNS  # noqa: F811
):
    dns_server.add("hook.test", "A", "127.0.0.1")
    outcome = await guarded.post(receiver.url("/ok", host="hook.test"), BODY, HEADERS)
    assert outcome.status is None
    assert outcome.error.startswith("refused: hook.test resolves to 127.0.0.1")
    assert receiver.requests == []


async def test_name_with_one_private_address_among_public_ones_is_refused(
    guarded: WebhookClient, receiver: Receiver, dns_server: LoopbackDNS  # noqa: F811
):
    dns_server.add("mixed.test", "A", "93.184.216.34")
    dns_server.add("mixed.test", "A", "10.0.0.7")
    outcome = await guarded.post(receiver.url("/ok", host="mixed.test"), BODY, HEADERS)
    assert outcome.status is None
    assert "10.0.0.7" in outcome.error


async def test_name_resolving_to_loopback_is_used_when_private_allowed(
    client: WebhookClient, receiver: Receiver, dns_server: LoopbackDNS  # noqa: F811
):
    dns_server.add("hook.test", "A", "127.0.0.1")
    outcome = await client.post(receiver.url("/ok", host="hook.test"), BODY, HEADERS)
    assert outcome.status == 202
    assert ("hook.test.", "A", "udp") in dns_server.queries  # resolved by our DNS, not the system's


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "[::ffff:127.0.0.1]", "[::1]", "0x7f.1", "2130706433", "127.1", "localhost"],
)
async def test_loopback_literals_are_refused(guarded: WebhookClient, receiver: Receiver, host: str):
    outcome = await guarded.post(receiver.url("/ok", host=host), BODY, HEADERS)
    assert outcome.status is None
    assert outcome.error.startswith("refused: ")
    assert receiver.requests == []


async def test_loopback_literal_allowed_when_private_allowed(client: WebhookClient, receiver: Receiver):
    assert (await client.post(receiver.url("/ok"), BODY, HEADERS)).status == 202
    assert (await client.post(receiver.url("/ok", host="localhost"), BODY, HEADERS)).status == 202


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- framing and keep-alive, against a bare HTTP/1.1 server ---------------------------

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

    async def __aenter__(self) -> RawServer:
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


async def test_chunked_response_is_read_and_the_connection_reused(client: WebhookClient):
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    async with RawServer(chunked) as server:
        outcome = await client.post(server.url, BODY, HEADERS)
        assert (outcome.status, outcome.error, outcome.response_excerpt) == (200, None, "hello world")
        assert (await client.post(server.url, BODY, HEADERS)).status == 200
    assert (len(server.requests), len(server.connections)) == (2, 1)


async def test_body_until_close_and_interim_responses(client: WebhookClient):
    until_close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it" + CLOSE
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\nmade"
    async with RawServer(until_close, interim) as server:
        outcome = await client.post(server.url, BODY, HEADERS)
        assert (outcome.status, outcome.error, outcome.response_excerpt) == (200, None, "all of it")
        outcome = await client.post(server.url, BODY, HEADERS)
        assert (outcome.status, outcome.response_excerpt) == (201, "made")


async def test_excerpt_bound_ends_the_read_without_waiting_for_the_rest(dns_server: LoopbackDNS):  # noqa: F811
    client = WebhookClient(resolver=make_resolver(dns_server.servers), allow_private=True,
                           connect_timeout=2, total_timeout=2, max_response_bytes=10)
    exactly_ten = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"
    ten_of_a_hundred = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabcdefghij"  # and then nothing
    try:
        async with RawServer(exactly_ten, ten_of_a_hundred) as server:
            outcome = await client.post(server.url, BODY, HEADERS)
            assert (outcome.status, outcome.error, outcome.response_excerpt) == (200, None, "0123456789")
            outcome = await client.post(server.url, BODY, HEADERS)  # not a timeout: 10 bytes are enough
            assert (outcome.status, outcome.error, outcome.response_excerpt) == (200, None, "abcdefghij")
            assert (await client.post(server.url, BODY, HEADERS)).status == 200
        # The complete body kept its connection; the cut one was dropped, not reused.
        assert (len(server.requests), len(server.connections)) == (3, 2)
    finally:
        await client.close()


async def test_connection_close_response_is_not_reused(client: WebhookClient):
    closing = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    async with RawServer(closing) as server:  # the server leaves it open: only the client can honour it
        assert (await client.post(server.url, BODY, HEADERS)).status == 200
        assert (await client.post(server.url, BODY, HEADERS)).status == 200
    assert (len(server.requests), len(server.connections)) == (2, 2)


async def test_http_1_0_response_without_keep_alive_is_not_reused(client: WebhookClient):
    async with RawServer(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok") as server:
        assert (await client.post(server.url, BODY, HEADERS)).status == 200
        assert (await client.post(server.url, BODY, HEADERS)).status == 200
    assert (len(server.requests), len(server.connections)) == (2, 2)


async def test_keep_alive_connection_closed_while_idle_is_retried_once(client: WebhookClient):
    async with RawServer() as server:
        assert (await client.post(server.url, BODY, HEADERS)).status == 200
        # The receiver drops the idle connection; the client has not seen that yet when it
        # writes the next request into it (nothing in between yields to the event loop).
        server.connections[0].close()
        outcome = await client.post(server.url, BODY, HEADERS)
        assert (outcome.status, outcome.error) == (200, None)
    assert (len(server.requests), len(server.connections)) == (2, 2)  # the second POST arrived once


async def test_fresh_connection_closed_without_an_answer_is_not_retried(client: WebhookClient):
    async with RawServer(HANG_UP) as server:
        outcome = await client.post(server.url, BODY, HEADERS)
        assert outcome.status is None
        assert outcome.error == "the server closed the connection without sending a complete response"
    assert len(server.requests) == 1


async def test_header_with_cr_or_lf_is_refused_before_connecting(client: WebhookClient):
    async with RawServer() as server:
        for value in ("a\r\nX-Injected: yes", "a\nb", "a\x00b"):
            outcome = await client.post(server.url, BODY, HEADERS | {"X-Custom": value})
            assert outcome.status is None
            assert outcome.error == "refused: the header 'X-Custom' contains CR, LF or NUL"
        outcome = await client.post(server.url, BODY, HEADERS | {"X-Bad\r\nName": "v"})
        assert outcome.error.startswith("refused: the header 'X-Bad")
    assert (server.requests, server.connections) == ([], [])


async def test_pool_limit_is_respected(dns_server: LoopbackDNS):  # noqa: F811
    client = WebhookClient(resolver=make_resolver(dns_server.servers), allow_private=True,
                           connect_timeout=2, total_timeout=5, pool_size=2)
    try:
        async with RawServer() as server:
            server.gate = asyncio.Event()
            posts = [asyncio.ensure_future(client.post(server.url, BODY, HEADERS)) for _ in range(5)]
            while len(server.requests) < 2:
                await asyncio.sleep(0.01)
            server.gate.set()
            outcomes = await asyncio.gather(*posts)
            assert [outcome.status for outcome in outcomes] == [200] * 5
            # Two connections, each reused: the other three POSTs waited for one of them.
            assert (len(server.requests), len(server.connections)) == (5, 2)
            # A full pool of idle connections to one host makes way for another host.
            other_host = server.url.replace("127.0.0.1", "localhost")
            assert (await client.post(other_host, BODY, HEADERS)).status == 200
            assert len(server.connections) == 3
    finally:
        await client.close()


# -- TLS -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_receiver(ca: trustme.CA) -> AsyncIterator[Receiver]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    receiver = Receiver()
    runner = web.AppRunner(_app(receiver), shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    receiver.port = runner.addresses[0][1]
    yield receiver
    receiver.release.set()
    await runner.cleanup()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_https_with_a_trusted_ca(dns_server: LoopbackDNS, tls_receiver: Receiver, ca: trustme.CA,  # noqa: F811
                                       host: str):
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    client = WebhookClient(resolver=make_resolver(dns_server.servers), allow_private=True,
                           connect_timeout=2, total_timeout=2, ssl_context=trusting)
    try:
        url = tls_receiver.url("/ok", host=host).replace("http://", "https://")
        for _ in range(2):
            outcome = await client.post(url, BODY, HEADERS)
            assert (outcome.status, outcome.error, outcome.response_excerpt) == (202, None, "accepted")
    finally:
        await client.close()
    assert len({headers["X-Peer"] for _, headers, _ in tls_receiver.requests}) == 1


async def test_https_with_an_untrusted_certificate_fails_clearly(client: WebhookClient, tls_receiver: Receiver):
    url = tls_receiver.url("/ok", host="localhost").replace("http://", "https://")
    outcome = await client.post(url, BODY, HEADERS)
    assert outcome.status is None
    assert outcome.error.startswith(
        f"could not connect to localhost:{tls_receiver.port}: [SSL: CERTIFICATE_VERIFY_FAILED]")
    assert tls_receiver.requests == []


async def test_https_with_a_certificate_for_another_name_fails(dns_server: LoopbackDNS,  # noqa: F811
                                                                tls_receiver: Receiver, ca: trustme.CA):
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    dns_server.add("hook.test", "A", "127.0.0.1")
    client = WebhookClient(resolver=make_resolver(dns_server.servers), allow_private=True,
                           connect_timeout=2, total_timeout=2, ssl_context=trusting)
    try:
        outcome = await client.post(tls_receiver.url("/ok", host="hook.test").replace("http://", "https://"),
                                    BODY, HEADERS)
    finally:
        await client.close()
    assert outcome.status is None
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.error and "hook.test" in outcome.error
    assert tls_receiver.requests == []
