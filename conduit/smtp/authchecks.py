"""SPF (pyspf) and DKIM (dkimpy) for inbound mail, against CONDUIT_DNS_SERVERS.

Both libraries are synchronous, so their checks run in a thread; their DNS goes through a
dnspython resolver built from the same servers as the rest of Conduit.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import dkim
import dns.exception
import dns.resolver
import spf

from conduit.services.policy_rules import DkimResult

log = logging.getLogger("conduit.smtp")
_DKIM_DOMAIN = re.compile(rb"(?:^|;)\s*d\s*=\s*([^;\s]+)", re.IGNORECASE)


@dataclass(frozen=True)
class SpfOutcome:
    result: str  # pass | fail | softfail | neutral | none | temperror | permerror
    domain: str


class DnsForChecks:
    """The synchronous lookups pyspf and dkimpy need, on one dnspython resolver."""

    def __init__(self, nameservers: list[tuple[str, int]], timeout: float) -> None:
        if nameservers:
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [ip for ip, _ in nameservers]
            self.resolver.nameserver_ports = {ip: port for ip, port in nameservers}
        else:
            self.resolver = dns.resolver.Resolver()
        self.resolver.lifetime = timeout
        self.resolver.cache = None

    def spf_lookup(self, name: str, qtype: str, strict: bool = True, timeout: float = 20) -> list:  # noqa: ARG002
        """pyspf's DNSLookup interface: [((name, qtype), value), ...]; TempError on failure."""
        try:
            answers = self.resolver.resolve(name, qtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise spf.TempError(f"DNS {exc}") from None
        out: list = []
        for rdata in answers.rrset or ():
            if qtype in ("A", "AAAA"):
                out.append(((name, qtype), rdata.address))
            elif qtype == "MX":
                out.append(((name, qtype), (rdata.preference, rdata.exchange)))
            elif qtype == "PTR":
                out.append(((name, qtype), rdata.target.to_text(True)))
            elif qtype in ("TXT", "SPF"):
                out.append(((name, qtype), rdata.strings))
        return out

    def dkim_txt(self, name: bytes | str, timeout: float = 5) -> bytes | None:  # noqa: ARG002
        """dkimpy's dnsfunc interface: the TXT record's text, or None."""
        qname = name.decode() if isinstance(name, bytes) else name
        try:
            answers = self.resolver.resolve(qname, "TXT")
        except (dns.exception.DNSException, ValueError):
            return None
        for rdata in answers:
            return b"".join(rdata.strings)
        return None


def install_spf_dns(dns_checks: DnsForChecks) -> None:
    """pyspf looks names up through its module-level DNSLookup; point it at our resolver.

    Process-wide, which is right: one process has one CONDUIT_DNS_SERVERS.
    """
    spf.DNSLookup = dns_checks.spf_lookup


def check_spf(dns_checks: DnsForChecks, *, ip: str, mail_from: str, helo: str) -> SpfOutcome:
    """SPF for the MAIL FROM domain, or the HELO domain for a null sender (RFC 7208 2.3, 2.4)."""
    domain = mail_from.rpartition("@")[2].lower() if mail_from else helo.lower()
    try:
        # check() answers (result, SMTP code, explanation)
        result, _code, _explanation = spf.query(i=ip, s=mail_from or f"postmaster@{helo}", h=helo,
                                                timeout=dns_checks.resolver.lifetime).check()
    except Exception as exc:  # noqa: BLE001 - pyspf raises assorted errors on bad input
        log.info("event=spf_error domain=%s error=%r", domain, exc)
        result = "permerror"
    return SpfOutcome(result=result, domain=domain)


def check_dkim(dns_checks: DnsForChecks, raw: bytes) -> tuple[DkimResult, ...]:
    """Every DKIM-Signature of the message with its d= domain and whether it verified."""
    try:
        verifier = dkim.DKIM(raw)
        signatures = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    except Exception:  # noqa: BLE001 - unparsable message: no valid signatures
        return ()
    results = []
    for index, value in enumerate(signatures):
        match = _DKIM_DOMAIN.search(value.replace(b"\r\n", b""))
        domain = match.group(1).decode(errors="replace").lower() if match else ""
        try:
            valid = bool(verifier.verify(idx=index, dnsfunc=dns_checks.dkim_txt))
        except Exception:  # noqa: BLE001 - dkimpy raises on malformed signatures
            valid = False
        results.append(DkimResult(domain=domain, valid=valid))
    return tuple(results)
