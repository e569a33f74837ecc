"""IP address rules for outbound webhooks (SSRF) and inbound allow-lists.

Why: a webhook target chosen by an account must never reach the service's own
network (loopback, RFC 1918, cloud metadata at 169.254.169.254, ...). Attackers
hide such targets behind notations that look like host names to a URL parser but
that the C resolver turns into addresses (``0x7f.1``, ``2130706433``) or inside
IPv6 forms that carry an IPv4 address (``::ffff:127.0.0.1``, ``64:ff9b::a00:1``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Characters of the legacy inet_aton() notations: decimal, 0-octal and 0x-hex parts.
_LEGACY_IPV4 = re.compile(r"[0-9a-fA-FxX.]+")

_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291, deprecated
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215, site-specific translation
_TEREDO = ipaddress.IPv6Network("2001::/32")  # RFC 4380


def parse_host_ip(host: str) -> IPAddress | None:
    """Return the address ``host`` denotes if it is an IP literal, else None (a host name).

    Accepts every notation an HTTP client would connect to: dotted quad, IPv6 with or
    without brackets (zone id dropped), a trailing dot, and the legacy inet_aton() forms
    (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``) that getaddrinfo() still honours.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        # IPv6; a zone id ("%eth0", or "%25eth0" percent-encoded in URLs) only picks the interface.
        try:
            return ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            return None
    if text.endswith("."):
        text = text[:-1]
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        pass
    if not _LEGACY_IPV4.fullmatch(text):
        return None
    try:
        # The platform's own parser, so we agree with what getaddrinfo() would connect to.
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address forwards to (mapped, NAT64 or 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def is_forbidden_target(ip: IPAddress | str) -> bool:
    """True when an outbound webhook must not connect to ``ip``.

    ``is_global`` (IANA special-purpose registries) is the base, but on Python 3.11 it
    calls multicast, site-local fec0::/10 and the IPv6 forms that wrap IPv4 "global",
    so those are checked explicitly: an address carrying an IPv4 address is judged by
    that IPv4 address, IPv4-compatible ::/96, local NAT64 and Teredo are refused outright.
    """
    if isinstance(ip, str):
        parsed = parse_host_ip(ip)
        if parsed is None:
            raise ValueError(f"'{ip}' is not an IP address")
        ip = parsed
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_forbidden_target(embedded)
        if ip in _IPV4_COMPATIBLE or ip in _NAT64_LOCAL or ip in _TEREDO or ip.is_site_local:
            return True
    elif ip in _SHARED_ADDRESS_SPACE:
        return True
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def parse_ip_list(value: str) -> list[IPNetwork]:
    """Parse comma- or whitespace-separated IP addresses and CIDR networks.

    A bare address becomes a /32 or /128 network. A network with host bits set
    (``10.0.0.1/8``) is refused rather than silently widened: in an allow-list the
    author may have meant the single host, so we ask instead of guessing.
    Only standard notation is accepted here (no ``127.1``): this is configuration.
    Duplicates are dropped, order kept.
    """
    networks: list[IPNetwork] = []
    for entry in re.split(r"[\s,]+", value.strip()):
        if not entry:
            continue
        try:
            network = ipaddress.ip_network(entry, strict=True)
        except ValueError as exc:
            if "has host bits set" in str(exc):
                widened = ipaddress.ip_network(entry, strict=False)
                raise ValueError(
                    f"'{entry}' has host bits set; write the network as '{widened}' "
                    f"or the single address without a prefix"
                ) from None
            raise ValueError(f"'{entry}' is not an IP address or CIDR network") from None
        if network not in networks:
            networks.append(network)
    return networks


def ip_allowed(ip: str, networks: Iterable[IPNetwork]) -> bool:
    """True when ``ip`` is inside one of ``networks``; an empty list means no restriction.

    An IPv4-mapped IPv6 peer (``::ffff:10.0.0.1``, what a dual-stack socket reports)
    also matches IPv4 networks. Text that is not an IP address is never allowed.
    """
    networks = list(networks)
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(ip.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(candidate in network for candidate in candidates for network in networks)
