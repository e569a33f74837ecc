"""SPF (pyspf), DKIM (dkimpy) and a DMARC verdict from them, for inbound mail, against
CONDUIT_DNS_SERVERS.

Both libraries are synchronous, so their checks run in a thread; their DNS goes through a
dnspython resolver built from the same servers as the rest of Conduit.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

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


def from_domain(raw: bytes) -> str:
    """The domain of the (first) From address, read from the header block only."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    message = BytesHeaderParser(policy=compat32).parsebytes(head)
    addresses = getaddresses([str(v) for v in message.get_all("From", [])])
    return addresses[0][1].rpartition("@")[2].strip().lower() if addresses else ""


def _aligned(domain: str, author_domain: str) -> bool:
    """Conservative alignment: the same domain, or one a subdomain of the other.

    DMARC's relaxed mode compares organizational domains, which needs the Public Suffix List;
    without it this never calls two unrelated domains aligned (it may miss sibling subdomains).
    """
    domain, author_domain = domain.lower().rstrip("."), author_domain.lower().rstrip(".")
    return bool(domain) and (domain == author_domain or domain.endswith("." + author_domain)
                             or author_domain.endswith("." + domain))


def check_dmarc(dns_checks: DnsForChecks, raw: bytes, spf: SpfOutcome | None, dkim: tuple[DkimResult, ...]) -> str:
    """``none`` when the author domain publishes no DMARC record, else ``pass`` or ``fail``."""
    author = from_domain(raw)
    if not author:
        return "none"
    record = dns_checks.dkim_txt(f"_dmarc.{author}") or dns_checks.dkim_txt(
        "_dmarc." + ".".join(author.split(".")[-2:]))
    if not record or not record.lstrip().lower().startswith(b"v=dmarc1"):
        return "none"
    spf_aligned = spf is not None and spf.result == "pass" and _aligned(spf.domain, author)
    dkim_aligned = any(d.valid and _aligned(d.domain, author) for d in dkim)
    return "pass" if spf_aligned or dkim_aligned else "fail"
