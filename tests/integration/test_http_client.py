"""The webhook transports against real aiohttp servers, a bare asyncio HTTP server and the
loopback DNS server: outcomes, bounds, keep-alive, TLS and the SSRF guard, without mocks and
without timing assertions.

Every case runs against both transports (``transport_kind``): Conduit's own client and the
aiohttp transport, its reference. Where they must differ, the case says so and why."""

from __future__ import annotations

import asyncio
import socket
import ssl

import pytest

import conduit
from conduit.net.dns import make_resolver
from conduit.net.http_transport import EXCERPT_BYTES, WebhookTransport
from tests.support.dns_server import LoopbackDNS
from tests.support.http_servers import (
    BODY,
    CLOSE,
    HANG_UP,
    HEADERS,
    TRANSPORTS,
    MakeTransport,
    RawServer,
    Receiver,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def client(make: MakeTransport) -> WebhookTransport:
    """Private targets allowed (the receiver is on loopback)."""
    return make(allow_private=True)


@pytest.fixture
def guarded(make: MakeTransport) -> WebhookTransport:
    """The production setting: only public addresses."""
    return make()


# -- outcomes ------------------------------------------------------------------------


async def test_2xx_delivers_body_and_headers(client: WebhookTransport, receiver: Receiver):
    outcome = await client.post(receiver.url("/ok"), BODY, HEADERS)
    assert (outcome.status, outcome.error, outcome.response_excerpt) == (202, None, "accepted")
    assert (outcome.content_type, outcome.retry_after) == ("text/plain; charset=utf-8", None)
    assert outcome.duration_ms >= 0
    [(_, headers, body)] = receiver.requests
    assert body == BODY
    assert headers["User-Agent"] == f"Conduit/{conduit.__version__}"
    assert headers["Content-Type"] == "application/json"
    assert headers["webhook-id"] == "msg_1"
    assert headers["X-Custom"] == "yes"


async def test_connections_are_reused(client: WebhookTransport, receiver: Receiver):
    for _ in range(3):
        assert (await client.post(receiver.url("/ok"), BODY, HEADERS)).status == 202
    assert len(receiver.requests) == 3
    assert len({headers["X-Peer"] for _, headers, _ in receiver.requests}) == 1  # one connection


async def test_cookies_are_never_sent_back_and_responses_not_compressed(client: WebhookTransport, receiver: Receiver):
    await client.post(receiver.url("/ok"), BODY, HEADERS)
    await client.post(receiver.url("/ok"), BODY, HEADERS)
    assert all("Cookie" not in headers for _, headers, _ in receiver.requests)
    assert receiver.requests[0][1]["Accept-Encoding"] == "identity"


async def test_500_is_an_outcome_with_the_body(client: WebhookTransport, receiver: Receiver):
    outcome = await client.post(receiver.url("/error"), BODY, HEADERS)
    assert (outcome.status, outcome.error, outcome.response_excerpt) == (500, "HTTP 500 Internal Server Error: boom",
                                                                         "boom")


async def test_retry_after_is_passed_on(client: WebhookTransport, receiver: Receiver):
    outcome = await client.post(receiver.url("/unavailable"), BODY, HEADERS)
    assert (outcome.status, outcome.retry_after) == (503, "120")
    assert (outcome.error, outcome.content_type) == ("HTTP 503 Service Unavailable: later", "text/plain; charset=utf-8")


async def test_a_failed_attempt_keeps_the_first_kib_and_its_first_line(client: WebhookTransport, receiver: Receiver):
    outcome = await client.post(receiver.url("/long-error"), BODY, HEADERS)
    assert (outcome.status, outcome.content_type) == (502, "text/html; charset=utf-8")
    # 1 KiB of the body: a blank line and 340 three-byte characters; the 341st is cut in two by
    # the bound and left out rather than shown as a replacement character.
    assert outcome.response_excerpt == "\n \n" + "€" * 340
    assert len(("\n \n" + "€" * 341).encode()) > EXCERPT_BYTES >= len(outcome.response_excerpt.encode())
    # The error: status, reason and the first line that says something, cut at 200 characters.
    assert outcome.error == "HTTP 502 Bad Gateway: " + "€" * 199 + "…"


async def test_a_failed_attempt_without_a_body_or_a_known_status_still_says_what_happened(
        client: WebhookTransport, receiver: Receiver):
    outcome = await client.post(receiver.url("/not-found"), BODY, HEADERS)
    assert (outcome.status, outcome.error, outcome.response_excerpt) == (404, "HTTP 404 Not Found", "")
    outcome = await client.post(receiver.url("/odd-status"), BODY, HEADERS)
    assert (outcome.status, outcome.error) == (599, "HTTP 599: bad  news")
    assert outcome.response_excerpt == "bad\x00 news\r\nmore"


async def test_hanging_receiver_times_out(client: WebhookTransport, receiver: Receiver):
    outcome = await client.post(receiver.url("/hang"), BODY, HEADERS)
    assert outcome.status is None
    assert "timeout" in outcome.error
    assert receiver.paths == ["/hang"]


async def test_slow_receiver_within_the_timeout_is_fine(client: WebhookTransport, receiver: Receiver):
    outcome = await client.post(receiver.url("/slow"), BODY, HEADERS)
    assert (outcome.status, outcome.error, outcome.response_excerpt) == (200, None, "slow but fine")


async def test_large_response_is_read_only_up_to_the_bound(client: WebhookTransport, receiver: Receiver):
    outcome = await client.post(receiver.url("/big"), BODY, HEADERS)
    assert (outcome.status, outcome.error) == (200, None)
    assert outcome.response_excerpt == "x" * EXCERPT_BYTES
    # The client hung up instead of reading 10 MB: the server could not send it all.
    await asyncio.wait_for(receiver.big_body_done.wait(), timeout=10)
    assert receiver.big_body_finished is False
    # The pool is still usable after a dropped connection.
    assert (await client.post(receiver.url("/ok"), BODY, HEADERS)).status == 202


async def test_connection_closed_mid_response(client: WebhookTransport, receiver: Receiver):
    outcome = await client.post(receiver.url("/truncated"), BODY, HEADERS)
    assert outcome.status is None
    assert "closed" in outcome.error


async def test_redirect_is_not_followed(client: WebhookTransport, receiver: Receiver):
    outcome = await client.post(receiver.url("/redirect"), BODY, HEADERS)
    assert (outcome.status, outcome.error) == (302, "redirect not followed")
    assert receiver.paths == ["/redirect"]


async def test_connection_refused(client: WebhookTransport, receiver: Receiver):
    port = receiver.port
    receiver.port = _closed_port()
    outcome = await client.post(receiver.url("/ok"), BODY, HEADERS)
    assert outcome.status is None
    assert "could not connect" in outcome.error
    receiver.port = port


async def test_unresolvable_host(client: WebhookTransport, receiver: Receiver):
    outcome = await client.post(receiver.url("/ok", host="nowhere.test"), BODY, HEADERS)
    assert outcome.status is None
    assert outcome.error.startswith("could not resolve nowhere.test")


async def test_invalid_url_is_an_outcome(client: WebhookTransport):
    outcome = await client.post("not a url", BODY, HEADERS)
    assert outcome.status is None
    assert outcome.error


# -- SSRF guard ----------------------------------------------------------------------


async def test_name_resolving_to_loopback_is_refused(
    guarded: WebhookTransport, receiver: Receiver, dns_server: LoopbackDNS
):
    dns_server.add("hook.test", "A", "127.0.0.1")
    outcome = await guarded.post(receiver.url("/ok", host="hook.test"), BODY, HEADERS)
    assert outcome.status is None
    assert outcome.error.startswith("refused: hook.test resolves to 127.0.0.1")
    assert receiver.requests == []


async def test_name_with_one_private_address_among_public_ones_is_refused(
    guarded: WebhookTransport, receiver: Receiver, dns_server: LoopbackDNS
):
    dns_server.add("mixed.test", "A", "93.184.216.34")
    dns_server.add("mixed.test", "A", "10.0.0.7")
    outcome = await guarded.post(receiver.url("/ok", host="mixed.test"), BODY, HEADERS)
    assert outcome.status is None
    assert "10.0.0.7" in outcome.error


async def test_name_resolving_to_loopback_is_used_when_private_allowed(
    client: WebhookTransport, receiver: Receiver, dns_server: LoopbackDNS
):
    dns_server.add("hook.test", "A", "127.0.0.1")
    outcome = await client.post(receiver.url("/ok", host="hook.test"), BODY, HEADERS)
    assert outcome.status == 202
    assert ("hook.test.", "A", "udp") in dns_server.queries  # resolved by our DNS, not the system's


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "[::ffff:127.0.0.1]", "[::1]", "0x7f.1", "2130706433", "127.1", "localhost"],
)
async def test_loopback_literals_are_refused(guarded: WebhookTransport, receiver: Receiver, host: str):
    outcome = await guarded.post(receiver.url("/ok", host=host), BODY, HEADERS)
    assert outcome.status is None
    assert outcome.error.startswith("refused: ")
    assert receiver.requests == []


async def test_loopback_literal_allowed_when_private_allowed(client: WebhookTransport, receiver: Receiver):
    assert (await client.post(receiver.url("/ok"), BODY, HEADERS)).status == 202
    assert (await client.post(receiver.url("/ok", host="localhost"), BODY, HEADERS)).status == 202


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- framing and keep-alive, against a bare HTTP/1.1 server ---------------------------

async def test_chunked_response_is_read_and_the_connection_reused(client: WebhookTransport):
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    async with RawServer(chunked) as server:
        outcome = await client.post(server.url, BODY, HEADERS)
        assert (outcome.status, outcome.error, outcome.response_excerpt) == (200, None, "hello world")
        assert (await client.post(server.url, BODY, HEADERS)).status == 200
    assert (len(server.requests), len(server.connections)) == (2, 1)


async def test_body_until_close_and_interim_responses(client: WebhookTransport):
    until_close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it" + CLOSE
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\nmade"
    async with RawServer(until_close, interim) as server:
        outcome = await client.post(server.url, BODY, HEADERS)
        assert (outcome.status, outcome.error, outcome.response_excerpt) == (200, None, "all of it")
        outcome = await client.post(server.url, BODY, HEADERS)
        assert (outcome.status, outcome.response_excerpt) == (201, "made")


async def test_read_bound_ends_the_read_without_waiting_for_the_rest(make: MakeTransport):
    client = make(allow_private=True, max_response_bytes=10)
    exactly_ten = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"
    ten_of_a_hundred = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabcdefghij"  # and then nothing
    async with RawServer(exactly_ten, ten_of_a_hundred) as server:
        outcome = await client.post(server.url, BODY, HEADERS)
        assert (outcome.status, outcome.error, outcome.response_excerpt) == (200, None, "0123456789")
        outcome = await client.post(server.url, BODY, HEADERS)  # not a timeout: 10 bytes are enough
        assert (outcome.status, outcome.error, outcome.response_excerpt) == (200, None, "abcdefghij")
        assert (await client.post(server.url, BODY, HEADERS)).status == 200
    # The complete body kept its connection; the cut one was dropped, not reused.
    assert (len(server.requests), len(server.connections)) == (3, 2)


async def test_connection_close_response_is_not_reused(client: WebhookTransport):
    closing = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    async with RawServer(closing) as server:  # the server leaves it open: only the client can honour it
        assert (await client.post(server.url, BODY, HEADERS)).status == 200
        assert (await client.post(server.url, BODY, HEADERS)).status == 200
    assert (len(server.requests), len(server.connections)) == (2, 2)


async def test_http_1_0_response_without_keep_alive_is_not_reused(client: WebhookTransport):
    async with RawServer(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok") as server:
        assert (await client.post(server.url, BODY, HEADERS)).status == 200
        assert (await client.post(server.url, BODY, HEADERS)).status == 200
    assert (len(server.requests), len(server.connections)) == (2, 2)


async def test_keep_alive_connection_closed_while_idle_is_retried_once(client: WebhookTransport):
    async with RawServer() as server:
        assert (await client.post(server.url, BODY, HEADERS)).status == 200
        # The receiver drops the idle connection; the client has not seen that yet when it
        # writes the next request into it (nothing in between yields to the event loop).
        server.connections[0].close()
        outcome = await client.post(server.url, BODY, HEADERS)
        assert (outcome.status, outcome.error) == (200, None)
    assert (len(server.requests), len(server.connections)) == (2, 2)  # the second POST arrived once


async def test_fresh_connection_closed_without_an_answer_is_not_retried(client: WebhookTransport):
    async with RawServer(HANG_UP) as server:
        outcome = await client.post(server.url, BODY, HEADERS)
        assert outcome.status is None
        assert outcome.error == "the server closed the connection without sending a complete response"
    assert len(server.requests) == 1


async def test_header_with_cr_or_lf_is_refused_before_connecting(client: WebhookTransport):
    async with RawServer() as server:
        for value in ("a\r\nX-Injected: yes", "a\nb", "a\x00b"):
            outcome = await client.post(server.url, BODY, HEADERS | {"X-Custom": value})
            assert outcome.status is None
            assert outcome.error == "refused: the header 'X-Custom' contains CR, LF or NUL"
        outcome = await client.post(server.url, BODY, HEADERS | {"X-Bad\r\nName": "v"})
        assert outcome.error.startswith("refused: the header 'X-Bad")
    assert (server.requests, server.connections) == ([], [])


async def test_pool_limit_is_respected(make: MakeTransport):
    client = make(allow_private=True, total_timeout=5, pool_size=2)
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


# -- TLS -----------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_https_with_a_trusted_ca(make: MakeTransport, tls_receiver: Receiver, trusting: ssl.SSLContext,
                                       host: str):
    client = make(allow_private=True, ssl_context=trusting)
    url = tls_receiver.url("/ok", host=host).replace("http://", "https://")
    for _ in range(2):
        outcome = await client.post(url, BODY, HEADERS)
        assert (outcome.status, outcome.error, outcome.response_excerpt) == (202, None, "accepted")
    assert len({headers["X-Peer"] for _, headers, _ in tls_receiver.requests}) == 1


async def test_https_with_an_untrusted_certificate_fails_clearly(client: WebhookTransport, tls_receiver: Receiver):
    url = tls_receiver.url("/ok", host="localhost").replace("http://", "https://")
    outcome = await client.post(url, BODY, HEADERS)
    assert outcome.status is None
    assert outcome.error.startswith(
        f"could not connect to localhost:{tls_receiver.port}: [SSL: CERTIFICATE_VERIFY_FAILED]")
    assert tls_receiver.requests == []


async def test_https_with_a_certificate_for_another_name_fails(make: MakeTransport, dns_server: LoopbackDNS,
                                                                tls_receiver: Receiver, trusting: ssl.SSLContext):
    dns_server.add("hook.test", "A", "127.0.0.1")
    client = make(allow_private=True, ssl_context=trusting)
    outcome = await client.post(tls_receiver.url("/ok", host="hook.test").replace("http://", "https://"),
                                BODY, HEADERS)
    assert outcome.status is None
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.error and "hook.test" in outcome.error
    assert tls_receiver.requests == []


# -- both transports send the same request --------------------------------------------


async def test_client_owned_headers_are_refused_and_two_defaults_can_be_replaced(client: WebhookTransport):
    async with RawServer() as server:
        for name in ("Host", "content-length", "Transfer-Encoding", "Connection"):
            outcome = await client.post(server.url, BODY, HEADERS | {name: "x"})
            assert (outcome.status, outcome.error) == (None, f"refused: the header {name!r} is set by the HTTP client")
        assert server.requests == []
        replaced = {"user-agent": "Their-Agent/1", "Accept-Encoding": "gzip"}
        assert (await client.post(server.url, BODY, HEADERS | replaced)).status == 200
    head = server.requests[0].split(b"\r\n\r\n")[0].decode().lower()
    assert "user-agent: their-agent/1" in head and "accept-encoding: gzip" in head
    assert "conduit/" not in head and "identity" not in head


async def test_both_transports_send_the_same_request(dns_server: LoopbackDNS):
    """The aiohttp transport is the reference: the own client's request must match it, header for
    header (names compared without case, order aside), for an ASCII, an IDNA and a quoted target."""
    dns_server.add("xn--bcher-kva.test", "A", "127.0.0.1")
    sent: dict[str, list[tuple[str, dict[str, str], bytes]]] = {}
    async with RawServer() as server:
        port = server.url.split(":")[2].split("/")[0]
        urls = [server.url + "?a=1&b=%20c", f"http://bücher.test:{port}/ü/path with space"]
        for kind, transport in TRANSPORTS.items():
            client = transport(resolver=make_resolver(dns_server.servers), allow_private=True,
                               connect_timeout=2, total_timeout=2)
            try:
                for url in urls:
                    assert (await client.post(url, BODY, HEADERS)).status == 200
            finally:
                await client.close()
            sent[kind] = [_parsed(request) for request in server.requests[-len(urls):]]
    assert sent["fast"] == sent["aiohttp"]
    (line, headers, body), (idna_line, idna_headers, _) = sent["fast"]
    assert line == "POST /hook?a=1&b=%20c HTTP/1.1" and body == BODY
    assert idna_line == "POST /%C3%BC/path%20with%20space HTTP/1.1"
    assert idna_headers["host"] == f"xn--bcher-kva.test:{port}"
    assert headers == {"host": f"127.0.0.1:{port}", "user-agent": f"Conduit/{conduit.__version__}",
                       "accept-encoding": "identity", "content-length": str(len(BODY)),
                       "content-type": "application/json", "webhook-id": "msg_1", "x-custom": "yes"}


def _parsed(request: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = request.partition(b"\r\n\r\n")
    line, *fields = head.decode("latin-1").split("\r\n")
    return line, {name.lower(): value.strip() for name, _, value in (f.partition(":") for f in fields)}, body
