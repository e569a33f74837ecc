"""The webhook transport on aiohttp (``CONDUIT_HTTP_CLIENT=aiohttp``): the reference that
Conduit's own client (``conduit.net.http_client``) is tested against, and a fallback for
operators who prefer a well-kept library over speed.

It keeps the same rules through aiohttp's public API: targets and headers checked by
``conduit.net.http_target`` before aiohttp sees them; names resolved by ``GuardedResolver``
plugged in as aiohttp's resolver (``aiohttp.abc.AbstractResolver``), so the connector
connects only to the checked addresses, in order (no happy eyeballs racing, no DNS cache);
no redirects, no cookies (``DummyCookieJar``), no proxies from the environment
(``trust_env=False``), no decompression, the same User-Agent and read bound, the same
sentences in the delivery log. One difference: aiohttp's connect timeout also counts the
time spent waiting for a free connection of the pool, which Conduit's own client does not.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from types import SimpleNamespace

import aiohttp
import dns.asyncresolver
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from conduit.net.dns import make_resolver
from conduit.net.http_proxy import (
    EgressProxy,
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

log = logging.getLogger("conduit.delivery")

_MAX_CACHED_TARGETS = 1024


class GuardedAiohttpResolver(AbstractResolver):
    """aiohttp's resolver hook over ``GuardedResolver``: a refused name raises its
    ``ForbiddenTargetError`` (an OSError, which aiohttp wraps in ``ClientConnectorDNSError``)."""

    def __init__(self, guard: GuardedResolver) -> None:
        self._guard = guard

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results: list[ResolveResult] = []
        for address in await self._guard.resolve(host):
            found = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            if family in (socket.AF_UNSPEC, found):
                results.append(ResolveResult(hostname=host, host=str(address), port=port, family=found,
                                             proto=0, flags=socket.AI_NUMERICHOST))
        if not results:
            raise TargetResolutionError(f"could not resolve {host}: no address of the connector's family")
        return results

    async def close(self) -> None:
        return None


class AiohttpTransport:
    """POSTs deliveries with an ``aiohttp.ClientSession`` (a ``WebhookTransport``); the same
    options, outcomes and sentences as ``conduit.net.http_client.WebhookClient``."""

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
        self._resolver = resolver if resolver is not None else make_resolver([])
        self._allow_private = allow_private
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._max_response_bytes = max_response_bytes
        self._pool_size = pool_size
        self._ssl_context = ssl_context
        self._proxy: EgressProxy | None = parse_proxy_url(proxy) if proxy else None
        # Headers for the proxy: on CONNECT (aiohttp's proxy request), and on absolute-form requests.
        self._connect_headers = {"User-Agent": USER_AGENT}
        self._proxy_authorization: dict[str, str] = {}
        if self._proxy is not None and self._proxy.authorization is not None:
            self._proxy_authorization = {"Proxy-Authorization": self._proxy.authorization}
            self._connect_headers |= self._proxy_authorization
        self._targets: dict[str, tuple[Target, URL]] = {}
        self._session: aiohttp.ClientSession | None = None  # made in the event loop, at the first POST

    async def post(self, url: str, body: bytes, headers: dict[str, str], *,
                   timeout: float | None = None) -> HttpOutcome:
        started = time.monotonic()
        limit = self._total_timeout if timeout is None else timeout
        target: Target | None = None
        try:
            prepared = self._targets.get(url)
            if prepared is None:
                prepared = self._prepare(url)
            target, request_url = prepared
            if target.refusal is not None:
                return failure(started, target.refusal)
            to_proxy = self._proxy is not None and not target.tls
            refusal, user_agent, accept_encoding, _ = inspect_headers(headers, to_proxy=to_proxy)
            if refusal is not None:
                return failure(started, refusal)
            sent = headers | self._proxy_authorization if to_proxy else dict(headers)
            if user_agent:
                sent["User-Agent"] = USER_AGENT
            if accept_encoding:
                sent["Accept-Encoding"] = "identity"
            async with asyncio.timeout(limit):
                response = await self._send(request_url, body, sent)
                async with response:
                    status = response.status
                    if to_proxy:
                        detail = own_answer(status, response.headers.get("X-Smokescreen-Error"),
                                            response.headers.get("Proxy-Status"))
                        if detail is not None:  # the proxy answered in the receiver's place
                            response.close()
                            return failure(started, refusal_sentence(target, status, "", detail))
                    content, complete = await _read_bounded(response, self._max_response_bytes)
                    if not complete:
                        response.close()  # drop the connection rather than drain the rest
            return response_outcome(started, status, content, response.headers.get("Retry-After"),
                                    response.headers.get("Content-Type"), response.headers.get("X-Conduit-Smtp-Reason"))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
            return failure(started, self._describe(exc, target, limit))

    async def _send(self, url: URL, body: bytes, headers: dict[str, str]) -> aiohttp.ClientResponse:
        """The response head. A reused keep-alive connection that the receiver closed while it
        sat idle is tried once more on a new one, as Conduit's own client does (aiohttp itself
        retries only idempotent methods): Standard Webhooks receivers deduplicate on webhook-id."""
        session = self._client()
        proxy = self._proxy.url if self._proxy is not None else None
        for last in (False, True):
            reuse = {"reused": False}
            try:
                return await session.post(url, data=body, headers=headers, allow_redirects=False, proxy=proxy,
                                          proxy_headers=self._connect_headers, trace_request_ctx=reuse)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if last or not reuse["reused"] or isinstance(exc, aiohttp.ClientConnectorError):
                    raise
        raise AssertionError("unreachable")

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # With a proxy, the connector resolves only the proxy's name: the operator's own host.
            guard = GuardedResolver(self._resolver, allow_private=self._allow_private or self._proxy is not None)
            connector = aiohttp.TCPConnector(
                limit=self._pool_size, keepalive_timeout=IDLE_TIMEOUT, use_dns_cache=False,
                resolver=GuardedAiohttpResolver(guard), happy_eyeballs_delay=None,
                ssl=self._ssl_context if self._ssl_context is not None else True)
            reuse = aiohttp.TraceConfig()
            reuse.on_connection_reuseconn.append(_note_reuse)
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, trust_env=False,
                trace_configs=[reuse],
                timeout=aiohttp.ClientTimeout(total=None, connect=self._connect_timeout),
                skip_auto_headers=("Accept", "Content-Type", "User-Agent", "Accept-Encoding"))
        return self._session

    def _prepare(self, url: str) -> tuple[Target, URL]:
        target = parse_target(url, allow_private=self._allow_private, proxied=self._proxy is not None)
        # Already IDNA-encoded and quoted: aiohttp sends exactly what the own client sends.
        prepared = (target, URL(f"{target.key[0]}://{target.host_header}{target.path}", encoded=True))
        if len(self._targets) >= _MAX_CACHED_TARGETS:
            self._targets.clear()
        self._targets[url] = prepared
        return prepared

    def _describe(self, exc: Exception, target: Target | None, limit: float) -> str:
        """The sentence the own client writes for the same failure (``limit``: the POST's total timeout)."""
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return f"could not connect within {self._connect_timeout:g} s (timeout)"
        if isinstance(exc, TimeoutError):
            return f"no complete response within {limit:g} s (timeout)"
        if isinstance(exc, aiohttp.ClientConnectorCertificateError) and target is not None:
            error = exc.certificate_error
            cause = error if isinstance(error, OSError) else OSError(error)
            return str(ConnectError(target.host, target.port, [cause]))
        if isinstance(exc, aiohttp.ClientConnectorError):
            os_error = exc.os_error
            if isinstance(os_error, (ForbiddenTargetError, TargetResolutionError)) and self._proxy is None:
                return str(os_error)
            if self._proxy is not None and not isinstance(exc, aiohttp.ClientConnectorSSLError):
                if isinstance(os_error, TargetResolutionError):
                    return f"could not connect to the proxy {self._proxy.host}:{self._proxy.port}: {os_error}"
                return str(ConnectError(self._proxy.host, self._proxy.port, [os_error], what="the proxy "))
            if target is not None:
                return str(ConnectError(target.host, target.port, [os_error]))
        if isinstance(exc, aiohttp.ClientHttpProxyError) and target is not None:
            detail = exc.headers.get("X-Smokescreen-Error") if exc.headers is not None else None
            return refusal_sentence(target, exc.status, exc.message, detail)
        if isinstance(exc, aiohttp.ClientPayloadError):
            return "the connection was closed before the response body was complete"
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return "the server closed the connection without sending a complete response"
        if isinstance(exc, aiohttp.ClientResponseError):
            return f"HTTP error: invalid response: {exc.message}"
        if isinstance(exc, (InvalidTargetURL, aiohttp.InvalidURL)):
            return f"invalid target URL: {exc}"
        if isinstance(exc, (OSError, aiohttp.ClientError)):
            return f"HTTP error: {type(exc).__name__}: {exc}"
        log.warning("event=delivery_unexpected_error error=%s", type(exc).__name__, exc_info=exc)
        return f"unexpected error: {type(exc).__name__}: {exc}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _note_reuse(session: aiohttp.ClientSession, context: SimpleNamespace,  # noqa: ARG001 - aiohttp's trace-callback signature
                      params: aiohttp.TraceConnectionReuseconnParams) -> None:  # noqa: ARG001
    context.trace_request_ctx["reused"] = True


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body, and whether that was all of it."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), response.content.at_eof()
