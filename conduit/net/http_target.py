"""Where a webhook POST may go and what it may carry: the target URL's rules, the header rules
and the SSRF guard, the same for every transport (``conduit.net.http_transport``).

SSRF: host names are resolved with dnspython (honouring CONDUIT_DNS_SERVERS) by
``GuardedResolver``, which refuses a name when any of its addresses is loopback, private,
link-local or otherwise non-public; a transport then connects to exactly the addresses that
were checked, in order, so a name that changes its answer between the check and the
connection (DNS rebinding) gains nothing. IP-literal hosts are checked without DNS when the
URL is parsed; the legacy inet_aton() forms (``127.1``, ``2130706433``) are refused: as
forbidden targets when they denote one, otherwise as invalid URLs. Behind an egress proxy
(``conduit.net.http_proxy``) the proxy resolves names, so only IP literals and ``localhost``
names are refused here and the proxy is the guard for the rest.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import dns.asyncresolver
import idna

from conduit.net.addresses import IPAddress, is_forbidden_target, parse_host_ip
from conduit.net.dns import DnsLookupError, resolve_addresses

DEFAULT_PORTS = {"http": 80, "https": 443}
_LOCALHOST = ("127.0.0.1", "::1")
_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))  # keep printable ASCII (and escapes), quote the rest
_OVERRIDABLE = frozenset({"user-agent", "accept-encoding"})
_CLIENT_OWNED = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_FOR_THE_PROXY = ("proxy-", "x-smokescreen-")


class ForbiddenTargetError(OSError):
    """The target resolves to an address Conduit must not connect to."""


class TargetResolutionError(OSError):
    """The target's host name has no usable address."""


class InvalidTargetURL(ValueError):
    """The URL is not one a transport can POST to."""


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed target URL: where to connect and what the request line and ``Host`` say."""

    key: tuple[str, str, int]  # (scheme, host, port): a connection pool's key
    host: str  # IDNA-encoded, without brackets: for DNS, TLS and error sentences
    port: int
    tls: bool
    literal: IPAddress | None
    refusal: str | None  # the SSRF sentence when the target is refused before any connection
    host_header: str  # bracketed IPv6, ":port" unless the scheme's default
    path: str  # the request target in origin form, path and query, quoted

    @property
    def authority(self) -> str:
        """``host:port`` as a CONNECT request names it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def absolute_url(self) -> str:
        """The request target in absolute form (a request through a forward proxy)."""
        return f"{self.key[0]}://{self.host_header}{self.path}"


def parse_target(url: str, *, allow_private: bool, proxied: bool = False) -> Target:
    """The target of ``url``; ``InvalidTargetURL`` when it is none. A forbidden IP literal (and,
    when ``proxied``, a ``localhost`` name, which no DNS lookup of ours will see) gets its
    refusal sentence in ``Target.refusal`` unless ``allow_private``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidTargetURL(str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidTargetURL(f"{url} (not an http:// or https:// URL)")
    host = parts.hostname or ""
    if not host or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in host):
        raise InvalidTargetURL(f"{url} (no valid host)")
    if port == 0:
        raise InvalidTargetURL("Port out of range 1-65535")
    if port is None:
        port = DEFAULT_PORTS[scheme]
    literal = parse_host_ip(host)
    refusal = None
    if literal is not None:
        if not allow_private and is_forbidden_target(literal):
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
        if proxied and not allow_private and is_localhost(host):
            refusal = forbidden_reason(host, ipaddress.ip_address(_LOCALHOST[0]))
        host_header = host
    if port != DEFAULT_PORTS[scheme]:
        host_header = f"{host_header}:{port}"
    path = parts.path or "/"
    if not (path.isascii() and path.isprintable()) or " " in path:
        path = quote(path, safe=_URL_SAFE)
    if parts.query:
        query = parts.query
        if not (query.isascii() and query.isprintable()) or " " in query:
            query = quote(query, safe=_URL_SAFE)
        path = f"{path}?{query}"
    return Target((scheme, host, port), host, port, scheme == "https", literal, refusal, host_header, path)


def inspect_headers(headers: dict[str, str], *, to_proxy: bool = False) -> tuple[str | None, bool, bool, str]:
    """(refusal, add User-Agent, add Accept-Encoding, the header lines) for the caller's headers.

    A header with CR, LF or NUL, or one the transport sets itself, is refused; so is, when the
    request goes ``to_proxy`` in absolute form, one the proxy would act on (``Proxy-*``,
    smokescreen's ``X-Smokescreen-*``: a webhook's custom header must not pick the proxy's
    credentials or role). User-Agent and Accept-Encoding are the transport's unless the caller
    gives them. The header lines are the
    headers as they go on the wire (``Name: value\\r\\n`` each), for a transport that writes them.
    """
    count = len(headers)
    lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    if lines.count("\r") != count or lines.count("\n") != count or "\0" in lines:
        for name, value in headers.items():
            if any(ch in text for text in (name, value) for ch in "\r\n\0"):
                return f"refused: the header {name!r} contains CR, LF or NUL", False, False, ""
    user_agent = accept_encoding = True
    for name in headers:
        lowered = name.lower()
        if lowered in _OVERRIDABLE:
            if lowered == "user-agent":
                user_agent = False
            else:
                accept_encoding = False
        elif lowered in _CLIENT_OWNED:
            return f"refused: the header {name!r} is set by the HTTP client", False, False, ""
        elif to_proxy and lowered.startswith(_FOR_THE_PROXY):
            return f"refused: the header {name!r} would be read by the egress proxy", False, False, ""
    return None, user_agent, accept_encoding, lines


def forbidden_reason(host: str, address: IPAddress) -> str:
    """The delivery-log sentence for a refused target (wording as at save time)."""
    what = f"{address} is" if parse_host_ip(host) is not None else f"{host} resolves to {address},"
    return (
        f"refused: {what} a loopback, private, link-local or reserved address; "
        "Conduit only delivers to public addresses"
    )


def is_localhost(host: str) -> bool:
    """RFC 6761: ``localhost`` and names under it are loopback by definition."""
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


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
        if is_localhost(host):
            # Not in DNS, and dnspython skips /etc/hosts.
            return [ipaddress.ip_address(ip) for ip in _LOCALHOST]
        try:
            return await resolve_addresses(self._resolver, host)
        except DnsLookupError as exc:
            raise TargetResolutionError(f"could not resolve {host}: {exc.reason}") from None
