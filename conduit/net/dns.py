"""DNS lookups for domain verification and SSRF checks, honouring CONDUIT_DNS_SERVERS.

Why a wrapper: dnspython reports failures as a family of exceptions; callers (API
verification, SMTP policy, the webhook client) only need one exception carrying a
sentence for the user and a ``kind`` to tell permanent from temporary failures.
"""

from __future__ import annotations

import asyncio
import ipaddress

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.resolver

from conduit.net.addresses import IPAddress, parse_host_ip

DEFAULT_PORT = 53
_INVALID_NAME = (
    dns.name.EmptyLabel,
    dns.name.LabelTooLong,
    dns.name.NameTooLong,
    dns.name.BadEscape,
    dns.name.IDNAException,
)


class DnsLookupError(ValueError):
    """A lookup that produced no usable answer.

    ``kind`` is one of ``nxdomain``, ``no_records``, ``timeout``, ``servfail``,
    ``invalid_name`` or ``error``; ``temporary`` says whether retrying later may help.
    """

    def __init__(self, name: str, rdtype: str, kind: str, reason: str) -> None:
        super().__init__(f"{rdtype} lookup for {name} failed: {reason}")
        self.name = name
        self.rdtype = rdtype
        self.kind = kind
        self.reason = reason

    @property
    def temporary(self) -> bool:
        return self.kind in ("timeout", "servfail", "error")


def parse_dns_servers(value: str) -> list[tuple[str, int]]:
    """Parse ``CONDUIT_DNS_SERVERS``: ``127.0.0.1:5353, 10.0.0.1, [::1]:53, ::1``.

    Entries are IP addresses (no host names: we would need DNS to find DNS), the port
    defaults to 53, and an IPv6 address needs brackets when a port is given
    (``::1:53`` is read as the IPv6 address ``::1:53``). Empty entries are skipped.
    """
    servers: list[tuple[str, int]] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        host, port_text = _split_host_port(entry)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"DNS server '{entry}' is not an IP address (with optional :port)") from None
        port = DEFAULT_PORT
        if port_text is not None:
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise ValueError(f"DNS server '{entry}' has an invalid port (1-65535)")
            port = int(port_text)
        servers.append((str(ip), port))
    return servers


def _split_host_port(entry: str) -> tuple[str, str | None]:
    if entry.startswith("["):
        host, sep, rest = entry[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"DNS server '{entry}' is malformed: expected [IPv6]:port")
        return host, rest[1:] if rest else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, port
    return entry, None


def make_resolver(servers: list[tuple[str, int]], timeout: float = 3.0) -> dns.asyncresolver.Resolver:
    """An async resolver using exactly ``servers``, or the system's when the list is empty.

    ``lifetime`` bounds a whole lookup; caching stays off so a record the user just
    published (or removed) is seen on the next verification attempt.
    """
    if servers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in servers]
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.lifetime = timeout
    # One attempt at one server; short enough that a dead first server leaves time for the next.
    resolver.timeout = min(1.0, timeout / max(1, len(resolver.nameservers)))
    resolver.cache = None
    return resolver


async def _resolve(resolver: dns.asyncresolver.Resolver, name: str, rdtype: str) -> dns.resolver.Answer:
    try:
        return await resolver.resolve(name, rdtype, search=False)
    except dns.resolver.NXDOMAIN:
        raise DnsLookupError(name, rdtype, "nxdomain", "no such domain (NXDOMAIN)") from None
    except dns.resolver.NoAnswer:
        raise DnsLookupError(name, rdtype, "no_records", f"the name has no {rdtype} records") from None
    except dns.exception.Timeout:
        reason = f"no answer from the DNS servers within {resolver.lifetime:g} s (timeout)"
        raise DnsLookupError(name, rdtype, "timeout", reason) from None
    except dns.resolver.NoNameservers as exc:
        answers = sorted({str(error[3]) for error in exc.kwargs.get("errors", [])})
        kind = "servfail" if "SERVFAIL" in answers else "error"
        detail = ", ".join(answers) or "no usable server"
        raise DnsLookupError(name, rdtype, kind, f"the DNS servers failed to answer ({detail})") from None
    except _INVALID_NAME:
        raise DnsLookupError(name, rdtype, "invalid_name", "not a valid DNS name") from None
    except dns.exception.DNSException as exc:
        raise DnsLookupError(name, rdtype, "error", f"DNS error: {exc}") from None


async def lookup_txt(resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
    """TXT records of ``name``, each with its character-strings joined (as SPF/DKIM read them)."""
    answer = await _resolve(resolver, name, "TXT")
    return [b"".join(rdata.strings).decode("utf-8", errors="replace") for rdata in answer]


async def lookup_mx(resolver: dns.asyncresolver.Resolver, name: str) -> list[tuple[int, str]]:
    """MX records of ``name`` as ``(preference, host)``, sorted, hosts lower-case without the
    trailing dot. A null MX (RFC 7505, "no mail here") appears as ``(0, "")``."""
    answer = await _resolve(resolver, name, "MX")
    records = set()
    for rdata in answer:
        host = "" if rdata.exchange == dns.name.root else rdata.exchange.to_text(omit_final_dot=True)
        records.add((rdata.preference, host.lower()))
    return sorted(records)


async def resolve_addresses(resolver: dns.asyncresolver.Resolver, host: str) -> list[IPAddress]:
    """All A and AAAA addresses of ``host`` (an IP literal is returned as is, without DNS).

    One family failing is fine when the other answers (many servers mishandle AAAA);
    when neither does, the most telling failure is raised: NXDOMAIN, then a timeout or
    server failure, then "no records".
    """
    literal = parse_host_ip(host)
    if literal is not None:
        return [literal]
    results = await asyncio.gather(
        _resolve(resolver, host, "A"), _resolve(resolver, host, "AAAA"), return_exceptions=True
    )
    addresses: list[IPAddress] = []
    errors: list[DnsLookupError] = []
    for result in results:
        if isinstance(result, DnsLookupError):
            errors.append(result)
        elif isinstance(result, BaseException):
            raise result
        else:
            addresses.extend(ipaddress.ip_address(rdata.address) for rdata in result)
    if addresses:
        return list(dict.fromkeys(addresses))
    order = ["nxdomain", "invalid_name", "timeout", "servfail", "error", "no_records"]
    worst = min(errors, key=lambda error: order.index(error.kind))
    if worst.kind == "no_records":
        raise DnsLookupError(host, "A/AAAA", "no_records", "the name has no A or AAAA records")
    raise worst
