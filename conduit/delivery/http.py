"""The HTTP client that POSTs deliveries: aiohttp (measured cheaper per message than
httpx), one pooled session, bounded in time and in what it reads, guarded against SSRF.

SSRF: every connection goes through ``GuardedResolver``, which resolves with dnspython
(honouring CONDUIT_DNS_SERVERS) and refuses a name when any of its addresses is
loopback, private, link-local or otherwise non-public. aiohttp then connects to exactly
the addresses that were checked, so a name that changes its answer between a check
and the connection (DNS rebinding) gains nothing. aiohttp never asks the resolver about
IP literals (``connector._resolve_host`` returns them as they are, and rejects the
legacy ``127.1`` forms itself), so literal hosts are checked before the request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass

import aiohttp
import dns.asyncresolver
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

import conduit
from conduit.config import Settings
from conduit.net.addresses import IPAddress, is_forbidden_target, parse_host_ip
from conduit.net.dns import DnsLookupError, make_resolver, resolve_addresses

log = logging.getLogger("conduit.delivery")

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = f"Conduit/{conduit.__version__}"
_NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
_LOCALHOST = ("127.0.0.1", "::1")


class ForbiddenTargetError(OSError):
    """The target resolves to an address Conduit must not connect to."""


class TargetResolutionError(OSError):
    """The target's host name has no usable address."""


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


class GuardedResolver(AbstractResolver):
    """aiohttp resolver over dnspython that refuses non-public addresses."""

    def __init__(self, resolver: dns.asyncresolver.Resolver, *, allow_private: bool = False) -> None:
        self._resolver = resolver
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await self._addresses(host)
        if not self._allow_private:
            forbidden = [a for a in addresses if is_forbidden_target(a)]
            if forbidden:
                raise ForbiddenTargetError(forbidden_reason(host, forbidden[0]))
        results: list[ResolveResult] = []
        for address in addresses:
            address_family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            if family in (socket.AF_UNSPEC, address_family):
                results.append(ResolveResult(
                    hostname=host, host=str(address), port=port, family=address_family, proto=0, flags=_NUMERIC
                ))
        if not results:
            raise TargetResolutionError(f"could not resolve {host}: no address of the requested family")
        return results

    async def _addresses(self, host: str) -> list[IPAddress]:
        name = host.rstrip(".").lower()
        if name == "localhost" or name.endswith(".localhost"):
            # RFC 6761: loopback by definition, and not in DNS (dnspython skips /etc/hosts).
            return [ipaddress.ip_address(ip) for ip in _LOCALHOST]
        try:
            return await resolve_addresses(self._resolver, host)
        except DnsLookupError as exc:
            raise TargetResolutionError(f"could not resolve {host}: {exc.reason}") from None

    async def close(self) -> None:
        pass


class WebhookClient:
    """POSTs deliveries over one shared, pooled ``aiohttp.ClientSession``.

    ``post`` never raises (except on cancellation): every failure is an ``HttpOutcome``
    with ``status=None`` and a sentence in ``error``. Redirects are not followed (a 3xx
    is reported as such), cookies are never stored, proxies from the environment are not
    used, and responses are not decompressed (``Accept-Encoding: identity``) so the
    64 KiB read bound is a bound on memory too.
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
    ) -> None:
        self._resolver = resolver if resolver is not None else make_resolver([])
        self._allow_private = allow_private
        self._timeout = aiohttp.ClientTimeout(total=total_timeout, connect=connect_timeout)
        self._max_response_bytes = max_response_bytes
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        """Made on first use: aiohttp needs the running loop."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(self._resolver, allow_private=self._allow_private),
                limit=self._pool_size,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                trust_env=False,
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> HttpOutcome:
        started = time.monotonic()

        def outcome(
            status: int | None, error: str | None, excerpt: str = "", retry_after: str | None = None
        ) -> HttpOutcome:
            duration_ms = int((time.monotonic() - started) * 1000)
            return HttpOutcome(status, duration_ms, error, excerpt, retry_after)

        try:
            refusal = self._check_literal_host(url)
            if refusal:
                return outcome(None, refusal)
            session = self._get_session()
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                excerpt, complete = await self._read_excerpt(response)
                if not complete:
                    response.close()  # drop the connection rather than drain (or pool) the rest
                status = response.status
                error = "redirect not followed" if 300 <= status < 400 else None
                return outcome(status, error, excerpt, response.headers.get("Retry-After"))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
            return outcome(None, self._describe(exc))

    async def _read_excerpt(self, response: aiohttp.ClientResponse) -> tuple[str, bool]:
        """At most ``max_response_bytes`` of the body, and whether that was all of it."""
        chunks: list[bytes] = []
        size = 0
        while size < self._max_response_bytes:
            chunk = await response.content.read(self._max_response_bytes - size)
            if not chunk:
                return b"".join(chunks).decode("utf-8", errors="replace"), True
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks).decode("utf-8", errors="replace"), response.content.at_eof()

    def _check_literal_host(self, url: str) -> str | None:
        """The SSRF check for IP-literal hosts, which bypass the resolver."""
        host = URL(url).raw_host or ""
        address = parse_host_ip(host)
        if address is not None and not self._allow_private and is_forbidden_target(address):
            return forbidden_reason(host, address)
        return None

    def _describe(self, exc: Exception) -> str:
        """One sentence for the delivery log."""
        if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(
            exc.os_error, (ForbiddenTargetError, TargetResolutionError)
        ):
            return str(exc.os_error)
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return f"could not connect within {self._timeout.connect:g} s (timeout)"
        if isinstance(exc, asyncio.TimeoutError):
            return f"no complete response within {self._timeout.total:g} s (timeout)"
        if isinstance(exc, aiohttp.ClientConnectorError):
            return f"could not connect to {exc.host}:{exc.port}: {exc.strerror or exc.os_error}"
        if isinstance(exc, aiohttp.ClientPayloadError):
            return "the connection was closed before the response body was complete"
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return "the server closed the connection without sending a complete response"
        if isinstance(exc, (aiohttp.InvalidURL, ValueError)):
            return f"invalid target URL: {exc}"
        if isinstance(exc, aiohttp.ClientError):
            return f"HTTP error: {type(exc).__name__}: {exc}"
        log.warning("event=delivery_unexpected_error error=%s", type(exc).__name__, exc_info=exc)
        return f"unexpected error: {type(exc).__name__}: {exc}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def delivery_client(settings: Settings) -> WebhookClient:
    """The client as configured: CONDUIT_DNS_SERVERS, CONDUIT_ALLOW_PRIVATE_TARGETS, timeouts."""
    return WebhookClient(resolver=make_resolver(settings.dns_server_list, settings.dns_timeout),
                         allow_private=settings.allow_private_targets,
                         connect_timeout=settings.delivery_connect_timeout, total_timeout=settings.delivery_timeout)
