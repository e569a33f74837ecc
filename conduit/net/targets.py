"""Server-side request forgery guard for webhook targets.

Checked when a webhook is saved and again at delivery time on the address actually used,
so a host that later resolves to a private address (DNS rebinding) is still refused.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import dns.asyncresolver

from conduit.net.addresses import IPAddress, is_forbidden_target
from conduit.net.dns import DnsLookupError, resolve_addresses


async def public_addresses(url: str, resolver: dns.asyncresolver.Resolver) -> list[IPAddress]:
    """The addresses of the URL's host, all public; ValueError naming the problem otherwise."""
    host = urlsplit(url).hostname or ""
    try:
        addresses = await resolve_addresses(resolver, host)
    except DnsLookupError as exc:
        raise ValueError(f"target_url host {host} cannot be resolved ({exc.reason})") from None
    forbidden = [a for a in addresses if is_forbidden_target(a)]
    if forbidden:
        raise ValueError(
            f"target_url host {host} resolves to {forbidden[0]}, a loopback, private, link-local or "
            "reserved address; Conduit only delivers to public addresses"
        )
    return addresses
