"""DMARC (RFC 7489) from SPF and DKIM results: policy discovery, record parsing, alignment.

Pure: DNS comes in as a function returning the TXT strings of a name (raising `DnsFailure`
for a temporary failure), and the Public Suffix List as a `publicsuffixlist.PublicSuffixList`,
whose data ships in that package (no network at run time; upgrading the package updates it).

Choices where the RFC leaves room: the record is looked up at ``_dmarc.<author domain>``, then
at ``_dmarc.<organizational domain>`` (RFC 7489 6.6.3); several DMARC records at one name, or a
record without a valid ``p=`` (and no ``rua=`` that would make it ``p=none``), is ``permerror``;
a temporary DNS failure is ``temperror``. The result informs the webhook; Conduit never refuses
mail for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from publicsuffixlist import PublicSuffixList

from conduit.net.cached_dns import DnsFailure

POLICIES = ("none", "quarantine", "reject")


@dataclass(frozen=True)
class DmarcOutcome:
    """``result``: pass | fail | none | temperror | permerror; ``policy``: the record's policy
    for this author domain (``sp=`` for a subdomain when present) or None; ``domain``: the
    domain whose ``_dmarc`` record applied, or None."""

    result: str = "none"
    policy: str | None = None
    domain: str | None = None


@dataclass(frozen=True)
class DmarcRecord:
    policy: str
    subdomain_policy: str | None
    strict_dkim: bool
    strict_spf: bool


class InvalidRecord(ValueError):
    """A ``v=DMARC1`` record this receiver cannot apply."""


class SpfIdentity(Protocol):
    @property
    def result(self) -> str: ...
    @property
    def domain(self) -> str: ...


class DkimIdentity(Protocol):
    @property
    def domain(self) -> str: ...
    @property
    def valid(self) -> bool: ...


def is_dmarc_record(text: str) -> bool:
    """A TXT record is a DMARC record when its first tag is ``v=DMARC1``."""
    name, _, value = text.partition(";")[0].partition("=")
    return name.strip().lower() == "v" and value.strip().upper() == "DMARC1"


def parse_record(text: str) -> DmarcRecord:
    """The tags of a DMARC record; unknown tags are ignored, as are bad ``adkim``/``aspf``
    values (the relaxed default applies, RFC 7489 6.3)."""
    if not is_dmarc_record(text):
        raise InvalidRecord("the record does not start with v=DMARC1")
    tags: dict[str, str] = {}
    for part in text.split(";")[1:]:
        name, sep, value = part.partition("=")
        if sep and name.strip():
            tags.setdefault(name.strip().lower(), value.strip())
    policy = tags.get("p", "").lower()
    subdomain_policy = tags["sp"].lower() if "sp" in tags else None
    if policy not in POLICIES or (subdomain_policy is not None and subdomain_policy not in POLICIES):
        # RFC 7489 6.6.3 step 6: with a reporting address the record counts as p=none.
        if not tags.get("rua"):
            raise InvalidRecord(f"p={tags.get('p', '')!r} is not none, quarantine or reject")
        policy, subdomain_policy = "none", None
    return DmarcRecord(policy=policy, subdomain_policy=subdomain_policy,
                       strict_dkim=tags.get("adkim", "r").lower() == "s",
                       strict_spf=tags.get("aspf", "r").lower() == "s")


def organizational_domain(psl: PublicSuffixList, domain: str) -> str:
    """The registered domain (public suffix plus one label, RFC 7489 3.2): ``example.co.uk`` for
    ``mail.example.co.uk``; a name that is itself a public suffix is its own."""
    domain = domain.lower().rstrip(".")
    return psl.privatesuffix(domain) or domain


def aligned(psl: PublicSuffixList, domain: str, author: str, *, strict: bool) -> bool:
    """Strict: the same domain. Relaxed: the same organizational domain (so ``bounce.example.com``
    and ``news.example.com`` are aligned, ``example.com`` and ``example.net`` are not)."""
    domain, author = domain.lower().rstrip("."), author.lower().rstrip(".")
    if not domain or not author:
        return False
    if domain == author:
        return True
    return not strict and organizational_domain(psl, domain) == organizational_domain(psl, author)


def evaluate(author: str, *, spf: SpfIdentity | None, dkim: Iterable[DkimIdentity],
             txt: Callable[[str], list[str]], psl: PublicSuffixList) -> DmarcOutcome:
    """The DMARC verdict for a message whose From domain is ``author`` ("" when it has none)."""
    author = author.lower().rstrip(".")
    if not author:
        return DmarcOutcome()
    organizational = organizational_domain(psl, author)
    try:
        found = _discover(author, organizational, txt)
    except DnsFailure:
        return DmarcOutcome(result="temperror")
    if found is None:
        return DmarcOutcome()
    domain, records = found
    if len(records) != 1:
        return DmarcOutcome(result="permerror", domain=domain)
    try:
        record = parse_record(records[0])
    except InvalidRecord:
        return DmarcOutcome(result="permerror", domain=domain)
    policy = record.policy
    if domain != author and record.subdomain_policy is not None:
        policy = record.subdomain_policy
    spf_aligned = (spf is not None and spf.result == "pass"
                   and aligned(psl, spf.domain, author, strict=record.strict_spf))
    dkim_aligned = any(d.valid and aligned(psl, d.domain, author, strict=record.strict_dkim) for d in dkim)
    return DmarcOutcome(result="pass" if spf_aligned or dkim_aligned else "fail", policy=policy, domain=domain)


def _discover(author: str, organizational: str, txt: Callable[[str], list[str]]) -> tuple[str, list[str]] | None:
    """The domain whose ``_dmarc`` name holds DMARC records, with them: the author domain's, else
    its organizational domain's (RFC 7489 6.6.3)."""
    for domain in dict.fromkeys((author, organizational)):
        records = [text for text in txt(f"_dmarc.{domain}") if is_dmarc_record(text)]
        if records:
            return domain, records
    return None
