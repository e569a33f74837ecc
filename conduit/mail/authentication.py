"""SPF (pyspf), DKIM (dkimpy, with its RSA step by OpenSSL: conduit/mail/dkim_verifier.py) and
DMARC (conduit/mail/dmarc.py) for inbound mail, against CONDUIT_DNS_SERVERS.

pyspf and dkimpy are synchronous and look names up through a function they call. Here that
function answers from a TTL cache and asks for what is missing (conduit/net/cached_dns.py), so
the checks run on the event loop, resolve their misses with the async resolver, and hold no
thread while DNS answers. Only DKIM of a large message runs in a thread, for its hashing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import Any

import spf  # type: ignore[import-untyped]
from publicsuffixlist import PublicSuffixList

from conduit.mail import dmarc
from conduit.mail.dkim_verifier import DkimVerifier, KeyCache
from conduit.mail.dmarc import DmarcOutcome
from conduit.mail.header_end import header_end
from conduit.net.cached_dns import CachedResolver, DnsFailure, Lookups, NeedRecord
from conduit.net.domain_names import normalize_domain_name

__all__ = ["DkimResult", "DmarcOutcome", "InboundChecks", "SpfOutcome", "from_domain"]

log = logging.getLogger("conduit.smtp")
DKIM_INLINE_MAX_BYTES = 256 * 1024  # larger messages are hashed in a thread, off the event loop
# The lookups of the SPF check running now: pyspf calls one module-level DNS function.
_SPF_LOOKUPS: ContextVar[Lookups] = ContextVar("spf_lookups")


@dataclass(frozen=True)
class DkimResult:
    """One DKIM signature of a message: its ``d=`` domain and whether it verified."""

    domain: str
    valid: bool


@dataclass(frozen=True)
class SpfOutcome:
    result: str  # pass | fail | softfail | neutral | none | temperror | permerror
    domain: str


class InboundChecks:
    """The checks the SMTP server runs on inbound mail, sharing one cached resolver."""

    def __init__(self, nameservers: list[tuple[str, int]], *, timeout: float, cache_size: int) -> None:
        self.dns = CachedResolver(nameservers, timeout=timeout, cache_size=cache_size)
        self.timeout = timeout
        self.public_suffixes = PublicSuffixList()  # the list shipped in the package
        self.dkim_keys = KeyCache()
        spf.DNSLookup = _spf_dns  # pyspf's DNS hook is module-level; this one serves every instance

    async def spf(self, *, ip: str, mail_from: str, helo: str) -> SpfOutcome:
        """SPF for the MAIL FROM domain, or the HELO domain for a null sender (RFC 7208 2.3, 2.4)."""
        domain = mail_from.rpartition("@")[2].lower() if mail_from else helo.lower()
        sender = mail_from or f"postmaster@{helo}"

        def check(lookups: Lookups) -> str:
            token = _SPF_LOOKUPS.set(lookups)
            try:
                # check() answers (result, SMTP code, explanation)
                result, _code, _explanation = spf.query(i=ip, s=sender, h=helo, timeout=self.timeout).check()
                return str(result)
            except NeedRecord:
                raise
            except Exception as exc:  # noqa: BLE001 - pyspf raises assorted errors on bad input
                log.info("event=spf_error domain=%s error=%r", domain, exc)
                return "permerror"
            finally:
                _SPF_LOOKUPS.reset(token)

        return SpfOutcome(result=await self.dns.run(check, key=("spf", ip, sender, helo)), domain=domain)

    async def dkim(self, raw: bytes) -> tuple[DkimResult, ...]:
        """Every DKIM-Signature of the message with its d= domain and whether it verified."""
        return await self.dns.run(_DkimCheck(raw, self.dkim_keys), in_thread=len(raw) > DKIM_INLINE_MAX_BYTES)

    async def dmarc(self, raw: bytes, spf_outcome: SpfOutcome | None,
                    dkim_results: tuple[DkimResult, ...]) -> DmarcOutcome:
        """The DMARC verdict for the message's From domain (conduit/mail/dmarc.py)."""
        author = _ascii_domain(from_domain(raw))

        def check(lookups: Lookups) -> DmarcOutcome:
            return dmarc.evaluate(author, spf=spf_outcome, dkim=dkim_results, txt=_txt_strings(lookups),
                                  psl=self.public_suffixes)

        return await self.dns.run(check, key=("dmarc", author, spf_outcome, dkim_results))


@dataclass
class _DkimCheck:
    """Verifies a message's signatures in order; run again after a lookup, it goes on where it
    stopped (the message is parsed once, each verified signature is kept)."""

    raw: bytes
    keys: KeyCache
    verifier: DkimVerifier | None = None
    signatures: list[bytes] = field(default_factory=list)
    results: list[DkimResult] = field(default_factory=list)

    def __call__(self, lookups: Lookups) -> tuple[DkimResult, ...]:
        if self.verifier is None:
            try:
                self.verifier = DkimVerifier(self.raw, self.keys)
                self.signatures = [value for name, value in self.verifier.headers if name.lower() == b"dkim-signature"]
            except Exception:  # noqa: BLE001 - unparsable message: no valid signatures
                return ()
        dnsfunc = _dkim_txt(lookups)
        while len(self.results) < len(self.signatures):
            index = len(self.results)
            domain = signing_domain(self.signatures[index]).decode(errors="replace").lower()
            try:
                valid = bool(self.verifier.verify(idx=index, dnsfunc=dnsfunc))
            except NeedRecord:
                raise
            except Exception:  # noqa: BLE001 - dkimpy raises on malformed signatures
                valid = False
            self.results.append(DkimResult(domain=domain, valid=valid))
        return tuple(self.results)


def _spf_dns(name: str, qtype: str, strict: bool = True,  # noqa: ARG001 - pyspf's DNSLookup signature
             timeout: float = 20) -> list[tuple[tuple[str, str], Any]]:  # noqa: ARG001
    """pyspf's DNSLookup interface: [((name, qtype), value), ...]; TempError on failure."""
    try:
        records = _SPF_LOOKUPS.get().get(name, qtype)
    except DnsFailure as exc:
        raise spf.TempError(f"DNS {exc}") from None
    key = (name, qtype)
    if qtype in ("A", "AAAA"):
        return [(key, rdata.address) for rdata in records]  # type: ignore[attr-defined]
    if qtype == "MX":
        return [(key, (rdata.preference, rdata.exchange)) for rdata in records]  # type: ignore[attr-defined]
    if qtype == "PTR":
        return [(key, rdata.target.to_text(True)) for rdata in records]  # type: ignore[attr-defined]
    if qtype in ("TXT", "SPF"):
        return [(key, rdata.strings) for rdata in records]  # type: ignore[attr-defined]
    return []


def _dkim_txt(lookups: Lookups) -> Callable[..., bytes | None]:
    # dkimpy's dnsfunc; the resolver has the timeout
    def txt(name: bytes | str, timeout: float = 5) -> bytes | None:  # noqa: ARG001
        try:
            qname = name.decode("ascii") if isinstance(name, bytes) else name
            records = lookups.get(qname, "TXT")
        except (DnsFailure, UnicodeError):
            return None
        return b"".join(records[0].strings) if records else None  # type: ignore[attr-defined]

    return txt


def _txt_strings(lookups: Lookups) -> Callable[[str], list[str]]:
    def txt(name: str) -> list[str]:
        return [b"".join(rdata.strings).decode("utf-8", errors="replace")  # type: ignore[attr-defined]
                for rdata in lookups.get(name, "TXT")]

    return txt


def from_domain(raw: bytes) -> str:
    """The domain of the (first) From address, read from the header block only."""
    end = header_end(raw)
    head = raw[:end[0]] if end else raw
    if head.startswith((b"\r\n", b"\n")):
        return ""  # no header block at all
    field = from_field(head)
    if field is None:
        return ""
    value = field.replace(b"\r\n", b"").replace(b"\n", b"").decode("utf-8", errors="replace")
    if value.count("@") == 1 and not any(c in value for c in '",;:()\\[]'):
        # One plain address, "a@b" or "Name <a@b>" (most mail): no need for the full parser.
        address = value[value.find("<") + 1:value.rfind(">")] if "<" in value else value
        return address.rpartition("@")[2].strip().lower()
    addresses = getaddresses([value])
    return addresses[0][1].rpartition("@")[2].strip().lower() if addresses else ""


def from_field(head: bytes) -> bytes | None:
    """The value of the first From field in a header block, folded lines and all: group 1 of
    ``(?im)^from[ \\t]*:((?:[^\\r\\n]|\\r?\\n[ \\t])*)``, the definition (tests/unit/test_dmarc.py),
    found with ``bytes.find`` rather than that expression tried at every byte of the block."""
    lowered = head.lower()
    at = 0 if lowered.startswith(b"from") else _after(lowered.find(b"\nfrom"))
    while at >= 0:
        colon = at + 4
        while head[colon:colon + 1] in (b" ", b"\t"):
            colon += 1
        if head[colon:colon + 1] == b":":
            return _to_line_end(head, colon + 1)
        at = _after(lowered.find(b"\nfrom", at))
    return None


def _after(index: int) -> int:
    return index + 1 if index >= 0 else -1


def _to_line_end(head: bytes, start: int) -> bytes:
    """``head[start:]`` up to the first line break that does not fold the line (CR LF or LF,
    then a space or a tab), or the first lone CR."""
    end = start
    while True:
        breaks = [found for found in (head.find(b"\r", end), head.find(b"\n", end)) if found >= 0]
        stop = min(breaks) if breaks else len(head)
        if head.startswith(b"\r\n", stop) and head[stop + 2:stop + 3] in (b" ", b"\t"):
            end = stop + 3
        elif head.startswith(b"\n", stop) and head[stop + 1:stop + 2] in (b" ", b"\t"):
            end = stop + 2
        else:
            return head[start:stop]


def signing_domain(signature: bytes) -> bytes:
    """A DKIM-Signature value's d= domain, for the result even of a signature too broken to
    verify: group 1 of ``(?i)(?:^|;)\\s*d\\s*=\\s*([^;\\s]+)`` (the definition, tests/unit/test_dmarc.py)
    over the unfolded value; b"" when there is none."""
    for spec in signature.replace(b"\r\n", b"").split(b";"):
        name, equals, value = spec.partition(b"=")
        if equals and name.strip().lower() == b"d" and (words := value.split(maxsplit=1)):
            return words[0]
    return b""


def _ascii_domain(domain: str) -> str:
    """The A-label form of an internationalized domain; ASCII names (nearly all) as they are."""
    if domain.isascii():
        return domain.rstrip(".")
    try:
        return normalize_domain_name(domain)
    except ValueError:
        return ""
