"""Deliveries through an egress proxy (``CONDUIT_HTTP_PROXY``), for both transports: a real
tinyproxy on loopback (tests/support/tinyproxy.py) forwarding to real receivers, and a scripted
server answering as smokescreen does (its refusal statuses and ``X-Smokescreen-Error``)."""

from __future__ import annotations

import ast
import re
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import conduit
from conduit.net.http_transport import WebhookTransport
from tests.support.dns_server import LoopbackDNS
from tests.support.http_servers import BODY, HEADERS, MakeTransport, RawServer, Receiver
from tests.support.pipeline import free_port
from tests.support.tinyproxy import OUTGOING_ADDRESS, REFUSED_HOST, Tinyproxy, tinyproxy

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[Tinyproxy]:
    async with tinyproxy(tmp_path) as running:
        yield running


def _peers(receiver: Receiver) -> list[tuple[str, int]]:
    return [ast.literal_eval(headers["X-Peer"]) for _, headers, _ in receiver.requests]


# -- through the proxy -----------------------------------------------------------------


async def test_an_http_delivery_goes_through_the_proxy(make: MakeTransport, proxy: Tinyproxy, receiver: Receiver):
    client = make(allow_private=True, proxy=proxy.url())
    for _ in range(2):
        outcome = await client.post(receiver.url("/ok"), BODY, HEADERS)
        assert (outcome.status, outcome.error, outcome.response_excerpt) == (202, None, "accepted")
    # The receiver's peer is the proxy's outgoing address, and the proxy says it forwarded them.
    assert [address for address, _ in _peers(receiver)] == [OUTGOING_ADDRESS] * 2
    assert all("egress-proxy" in headers["Via"] for _, headers, _ in receiver.requests)
    assert [(headers["webhook-id"], body) for _, headers, body in receiver.requests] == [("msg_1", BODY)] * 2
    assert proxy.requests == [f"POST {receiver.url('/ok')}"] * 2  # absolute form


async def test_an_https_delivery_goes_through_a_tunnel(make: MakeTransport, proxy: Tinyproxy, tls_receiver: Receiver,
                                                       trusting: ssl.SSLContext):
    client = make(allow_private=True, proxy=proxy.url(), ssl_context=trusting)
    url = tls_receiver.url("/ok").replace("http://", "https://")
    for _ in range(2):
        outcome = await client.post(url, BODY, HEADERS)
        assert (outcome.status, outcome.error, outcome.response_excerpt) == (202, None, "accepted")
    # One tunnel, reused; TLS inside it is end to end, so the proxy never saw the request.
    peers = _peers(tls_receiver)
    assert len(peers) == 2 and set(peers) == {peers[0]} and peers[0][0] == OUTGOING_ADDRESS
    assert all("Via" not in headers for _, headers, _ in tls_receiver.requests)
    assert proxy.requests == [f"CONNECT 127.0.0.1:{tls_receiver.port}"]


# -- what the proxy refuses --------------------------------------------------------------


async def test_a_tunnel_the_proxy_refuses_is_a_failure_without_a_response(make: MakeTransport, proxy: Tinyproxy):
    client = make(allow_private=True, proxy=proxy.url())
    outcome = await client.post(f"https://{REFUSED_HOST}:8443/hook", BODY, HEADERS)
    assert (outcome.status, outcome.error) == (
        None, f"the proxy did not forward the request to {REFUSED_HOST}:8443: HTTP 403 Filtered")
    assert f'Proxying refused on filtered domain "{REFUSED_HOST}"' in proxy.log


async def test_an_http_request_refused_with_a_plain_403_looks_like_the_receivers_answer(make: MakeTransport,
                                                                                         proxy: Tinyproxy):
    """A proxy answers an absolute-form request in the receiver's place. tinyproxy's refusal is a
    403 that nothing marks as the proxy's own (no 407, X-Smokescreen-Error or Proxy-Status), so
    it is recorded as the receiver's 403 (docs/deployment.md, "Egress proxy": prefer https)."""
    client = make(allow_private=True, proxy=proxy.url())
    outcome = await client.post(f"http://{REFUSED_HOST}:8080/hook", BODY, HEADERS)
    assert outcome.status == 403
    assert outcome.error is not None and outcome.error.startswith("HTTP 403 Forbidden: ")
    assert f'Proxying refused on filtered domain "{REFUSED_HOST}"' in proxy.log


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_proxy_credentials(make: MakeTransport, tmp_path: Path, receiver: Receiver, tls_receiver: Receiver,
                                 trusting: ssl.SSLContext, scheme: str):
    if scheme == "https":
        receiver = tls_receiver
    url = receiver.url("/ok").replace("http://", f"{scheme}://")
    async with tinyproxy(tmp_path, credentials=("conduit", "s3cret")) as proxy:
        client = make(allow_private=True, proxy=proxy.url(credentials=("conduit", "s3cret")), ssl_context=trusting)
        assert (await client.post(url, BODY, HEADERS)).status == 202  # Proxy-Authorization on CONNECT or the POST
        for credentials in (None, ("conduit", "wrong")):
            client = make(allow_private=True, proxy=proxy.url(credentials=credentials), ssl_context=trusting)
            outcome = await client.post(url, BODY, HEADERS)
            # tinyproxy 1.11.1 (Debian 12) answers 401 where it means 407 (fixed upstream in 05f6e4e).
            refused = re.fullmatch(rf"the proxy did not forward the request to 127\.0\.0\.1:{receiver.port}: "
                                   r"HTTP (407 Proxy Authentication Required|401 Unauthorized)", outcome.error or "")
            if scheme == "https" or outcome.status is None:  # an answer to CONNECT, or a 407: the proxy's
                assert outcome.status is None and refused, outcome
            else:  # a 401 in the receiver's place carries nothing that marks it as the proxy's
                assert outcome.status == 401, outcome
    assert len(receiver.requests) == 1


SMOKESCREEN_DENIED = (b"HTTP/1.1 407 Request rejected by proxy\r\nX-Smokescreen-Error: Egress proxying is denied "
                      b"to host 'hooks.example': Destination address was denied by rule.\r\nContent-Length: 0\r\n\r\n")
SMOKESCREEN_UNREACHABLE = (b"HTTP/1.1 502 Bad gateway\r\nX-Smokescreen-Error: Failed to connect to remote host: "
                           b"connection refused\r\nContent-Length: 0\r\n\r\n")
PROXY_STATUS_ERROR = (b"HTTP/1.1 503 Service Unavailable\r\nProxy-Status: egress; error=destination_ip_prohibited\r\n"
                      b"Content-Length: 0\r\n\r\n")
FORWARDED = (b"HTTP/1.1 503 Service Unavailable\r\nProxy-Status: egress; received-status=503\r\n"
             b"Content-Length: 4\r\n\r\nbusy")


async def test_smokescreen_answers_are_recognised_as_the_proxys(make: MakeTransport, dns_server: LoopbackDNS):
    """A scripted server answers as smokescreen does (pkg/smokescreen/smokescreen.go, rejectResponse);
    the targets are names, which Conduit leaves to the proxy (no DNS query of its own)."""
    async with RawServer(SMOKESCREEN_DENIED, SMOKESCREEN_DENIED, SMOKESCREEN_UNREACHABLE, PROXY_STATUS_ERROR,
                         FORWARDED) as server:
        client = make(proxy=server.url.removesuffix("/hook"))
        tunnel = await client.post("https://hooks.example/hook", BODY, HEADERS)
        outcomes = [await client.post("http://hooks.example/hook", BODY, HEADERS) for _ in range(4)]
    detail = "Egress proxying is denied to host 'hooks.example': Destination address was denied by rule."
    assert (tunnel.status, tunnel.error) == (
        None,
        f"the proxy did not forward the request to hooks.example:443: HTTP 407 Request rejected by proxy ({detail})")
    assert [(o.status, o.error) for o in outcomes] == [
        (None, f"the proxy did not forward the request to hooks.example:80: HTTP 407 Proxy Authentication Required "
               f"({detail})"),
        (None, "the proxy did not forward the request to hooks.example:80: HTTP 502 Bad Gateway "
               "(Failed to connect to remote host: connection refused)"),
        (None, "the proxy did not forward the request to hooks.example:80: HTTP 503 Service Unavailable "
               "(egress; error=destination_ip_prohibited)"),
        (503, "HTTP 503 Service Unavailable: busy"),  # the receiver's answer, forwarded
    ]
    assert server.requests[0].startswith(b"CONNECT hooks.example:443 HTTP/1.1\r\n")
    assert f"\r\nUser-Agent: Conduit/{conduit.__version__}\r\n".encode() in server.requests[0]
    assert server.requests[1].startswith(b"POST http://hooks.example/hook HTTP/1.1\r\n")
    assert b"\r\nHost: hooks.example\r\n" in server.requests[1]
    assert dns_server.queries == []


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_an_unreachable_proxy_is_a_failure_without_a_response(make: MakeTransport, receiver: Receiver,
                                                                    scheme: str):
    port = free_port()  # nothing listens there
    client = make(allow_private=True, proxy=f"http://127.0.0.1:{port}")
    outcome = await client.post(f"{scheme}://127.0.0.1:{receiver.port}/ok", BODY, HEADERS)
    assert outcome.status is None
    assert outcome.error is not None and outcome.error.startswith(f"could not connect to the proxy 127.0.0.1:{port}: ")
    assert receiver.requests == []


async def test_a_proxy_name_that_does_not_resolve(make: MakeTransport):
    client = make(proxy="http://proxy.nowhere.test:4750")
    outcome = await client.post("https://hooks.example/hook", BODY, HEADERS)
    assert (outcome.status, outcome.error) == (None, "could not connect to the proxy proxy.nowhere.test:4750: "
                                                     "could not resolve proxy.nowhere.test: no such domain (NXDOMAIN)")


# -- the SSRF guard behind a proxy --------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "10.0.0.1", "169.254.169.254",
                                  "localhost", "hooks.localhost"])
@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_forbidden_literals_and_localhost_are_refused_before_the_proxy(make: MakeTransport, proxy: Tinyproxy,
                                                                            host: str, scheme: str):
    client: WebhookTransport = make(proxy=proxy.url())
    outcome = await client.post(f"{scheme}://{host}:8080/hook", BODY, HEADERS)
    assert outcome.status is None
    assert outcome.error is not None and outcome.error.startswith("refused: ")
    assert proxy.requests == []


async def test_names_are_left_to_the_proxy(make: MakeTransport, proxy: Tinyproxy, dns_server: LoopbackDNS):
    """Behind a proxy Conduit does not resolve target names (the proxy does, and is the guard):
    a name that Conduit's own guard would refuse reaches the proxy, which decides."""
    dns_server.add("hook.test", "A", "127.0.0.1")
    client = make(proxy=proxy.url())
    outcome = await client.post("https://hook.test:8443/hook", BODY, HEADERS)
    assert dns_server.queries == []
    assert proxy.requests == ["CONNECT hook.test:8443"]
    assert outcome.status is None  # tinyproxy resolves with the system's resolver, which does not know it
    assert outcome.error is not None and outcome.error.startswith(
        "the proxy did not forward the request to hook.test:8443: HTTP ")


@pytest.mark.parametrize("name", ["Proxy-Authorization", "proxy-anything", "X-Smokescreen-Role"])
async def test_headers_the_proxy_would_act_on_are_refused_when_it_can_read_them(
        make: MakeTransport, proxy: Tinyproxy, receiver: Receiver, tls_receiver: Receiver, trusting: ssl.SSLContext,
        name: str):
    """A webhook's custom header must not choose the proxy's credentials or role. Inside a tunnel
    the proxy cannot read them: there they are the receiver's business."""
    client = make(allow_private=True, proxy=proxy.url(), ssl_context=trusting)
    outcome = await client.post(receiver.url("/ok"), BODY, HEADERS | {name: "admin"})
    assert (outcome.status, outcome.error) == (None, f"refused: the header {name!r} would be read by the egress proxy")
    assert proxy.requests == []
    outcome = await client.post(tls_receiver.url("/ok").replace("http://", "https://"), BODY, HEADERS | {name: "admin"})
    assert outcome.status == 202
    assert [headers[name] for _, headers, _ in tls_receiver.requests] == ["admin"]
