"""SPF, DKIM and DMARC of inbound mail (conduit/mail/authentication.py) against the real loopback
DNS server: results, the TTL cache, shared and failed lookups, DMARC policy discovery and
alignment. The SMTP server's use of them is in tests/e2e/test_smtp_security.py."""

from __future__ import annotations

import asyncio
import threading
from email import policy as email_policy
from email.message import EmailMessage

import pytest

from conduit.mail.authentication import (
    DkimResult,
    DmarcOutcome,
    InboundChecks,
    SpfOutcome,
)
from tests.support.dns_server import LoopbackDNS
from tests.support.mail_auth import DkimKey


def _checks(zone: LoopbackDNS, cache_size: int = 1000) -> InboundChecks:
    return InboundChecks(zone.servers, timeout=2.0, cache_size=cache_size)


def _message(sender: str, subject: str = "Hello") -> bytes:
    message = EmailMessage()
    message["From"] = f"Ann <{sender}>"
    message["To"] = "box@in.example"
    message["Subject"] = subject
    message["Date"] = "Mon, 02 Jun 2025 10:00:00 +0000"
    message.set_content("Hi there\n")
    return message.as_bytes(policy=email_policy.SMTPUTF8)  # UTF-8 headers as SMTPUTF8 carries them


def _queries(zone: LoopbackDNS, name: str) -> int:
    return sum(1 for qname, _, _ in zone.queries if qname == name.lower() + ".")


def _spf_records(zone: LoopbackDNS, ttl: int = 60) -> None:
    """SPF for sender.example with two includes; 127.0.0.1 is allowed by the second."""
    zone.add("sender.example", "TXT", "v=spf1 include:_spf.sender.example include:_spf2.sender.example ~all", ttl=ttl)
    zone.add("_spf.sender.example", "TXT", "v=spf1 ip4:192.0.2.0/24 -all", ttl=ttl)
    zone.add("_spf2.sender.example", "TXT", "v=spf1 ip4:127.0.0.0/8 -all", ttl=ttl)


async def _spf(checks: InboundChecks, mail_from: str = "ann@sender.example") -> SpfOutcome:
    return await checks.spf(ip="127.0.0.1", mail_from=mail_from, helo="mta.sender.example")


# --- SPF and the cache ------------------------------------------------------------------

async def test_spf_through_includes_is_answered_from_the_cache_the_second_time(dns_zone):
    _spf_records(dns_zone)
    checks = _checks(dns_zone)
    first = await _spf(checks)
    asked = len(dns_zone.queries)
    second = await _spf(checks)
    assert first == second == SpfOutcome(result="pass", domain="sender.example")
    assert asked == 3  # the record and its two includes
    assert len(dns_zone.queries) == asked


async def test_spf_results_other_than_pass(dns_zone):
    dns_zone.add("fail.example", "TXT", "v=spf1 ip4:192.0.2.1 -all")
    dns_zone.add("soft.example", "TXT", "v=spf1 ~all")
    dns_zone.add("broken.example", "TXT", "v=spf1 ip4:127.0.0.1 include:nowhere.example -all")
    dns_zone.add("norecord.example", "MX", "10 mx.norecord.example")
    dns_zone.add("mx.example", "TXT", "v=spf1 mx -all")
    dns_zone.add("mx.example", "MX", "10 mail.mx.example")
    dns_zone.add("mail.mx.example", "A", "127.0.0.1")
    checks = _checks(dns_zone)
    results = {domain: (await _spf(checks, f"ann@{domain}")).result
               for domain in ("fail.example", "soft.example", "norecord.example", "missing.example", "mx.example")}
    assert results == {"fail.example": "fail", "soft.example": "softfail", "norecord.example": "none",
                       "missing.example": "none", "mx.example": "pass"}
    # An include whose domain has no SPF record is a permanent error once the check gets there.
    assert (await checks.spf(ip="192.0.2.9", mail_from="ann@broken.example", helo="h.example")).result == "permerror"


async def test_a_null_sender_is_checked_against_the_helo_name(dns_zone):
    dns_zone.add("mta.sender.example", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    outcome = await _checks(dns_zone).spf(ip="127.0.0.1", mail_from="", helo="mta.sender.example")
    assert outcome == SpfOutcome(result="pass", domain="mta.sender.example")


async def test_nonexistent_names_are_cached_too(dns_zone):
    checks = _checks(dns_zone)
    assert (await _spf(checks, "ann@nowhere.example")).result == "none"
    assert (await _spf(checks, "ann@nowhere.example")).result == "none"
    assert _queries(dns_zone, "nowhere.example") == 1


async def test_answers_are_asked_again_when_their_ttl_runs_out(dns_zone):
    _spf_records(dns_zone, ttl=1)
    checks = _checks(dns_zone)
    await _spf(checks)
    await asyncio.sleep(1.2)
    assert (await _spf(checks)).result == "pass"
    assert _queries(dns_zone, "sender.example") == 2


async def test_a_repeated_check_is_answered_until_its_records_expire(dns_zone):
    _spf_records(dns_zone, ttl=1)
    checks = _checks(dns_zone)
    assert [(await _spf(checks)).result for _ in range(3)] == ["pass"] * 3
    dns_zone.clear()
    dns_zone.add("sender.example", "TXT", "v=spf1 -all", ttl=1)
    assert (await _spf(checks)).result == "pass"  # within the TTL: the answers (and result) kept
    await asyncio.sleep(1.2)
    assert (await _spf(checks)).result == "fail"
    assert (await _spf(checks, "other@sender.example")).result == "fail"


async def test_answers_read_from_the_cache_are_not_used_past_their_ttl(dns_zone):
    _spf_records(dns_zone, ttl=1)
    checks = _checks(dns_zone)
    # A new sender each time: the SPF result itself is not kept, the DNS answers are.
    assert (await _spf(checks, "a@sender.example")).result == "pass"  # resolved
    assert (await _spf(checks, "b@sender.example")).result == "pass"  # read from the cache
    dns_zone.clear()
    dns_zone.add("sender.example", "TXT", "v=spf1 -all", ttl=1)
    assert (await _spf(checks, "c@sender.example")).result == "pass"  # within the TTL
    await asyncio.sleep(1.2)
    assert (await _spf(checks, "d@sender.example")).result == "fail"
    assert _queries(dns_zone, "sender.example") == 1  # since the clear: once, after the TTL


async def test_records_with_a_ttl_of_zero_still_give_a_result(dns_zone):
    _spf_records(dns_zone, ttl=0)
    checks = _checks(dns_zone)
    assert (await _spf(checks)).result == "pass"
    assert (await _spf(checks)).result == "pass"
    assert _queries(dns_zone, "sender.example") == 2  # nothing kept, each message asks


async def test_without_a_cache_every_message_asks(dns_zone):
    _spf_records(dns_zone)
    checks = _checks(dns_zone, cache_size=0)
    assert [(await _spf(checks)).result for _ in range(2)] == ["pass", "pass"]
    assert _queries(dns_zone, "sender.example") == 2


async def test_concurrent_checks_share_one_query_per_name(dns_zone):
    _spf_records(dns_zone)
    checks = _checks(dns_zone)
    outcomes = await asyncio.gather(*(_spf(checks) for _ in range(20)))
    assert {outcome.result for outcome in outcomes} == {"pass"}
    assert [_queries(dns_zone, name) for name in ("sender.example", "_spf.sender.example",
                                                  "_spf2.sender.example")] == [1, 1, 1]


def _threads_of_conduit() -> set[threading.Thread]:
    """Every thread but the loopback DNS server's, which answers each query in a thread of its own."""
    return {t for t in threading.enumerate() if "process_request_thread" not in t.name}


async def test_checks_hold_no_thread_while_dns_answers(dns_zone):
    _spf_records(dns_zone)
    key = DkimKey("sender.example")
    key.publish(dns_zone)
    dns_zone.add("_dmarc.sender.example", "TXT", "v=DMARC1; p=reject")
    checks = _checks(dns_zone)
    raw = key.sign(_message("ann@sender.example"))
    before = _threads_of_conduit()
    spf = await _spf(checks)
    dkim = await checks.dkim(raw)
    dmarc = await checks.dmarc(raw, spf, dkim)
    assert (spf.result, dkim, dmarc.result) == ("pass", (DkimResult("sender.example", True),), "pass")
    assert _threads_of_conduit() - before == set()  # no thread started, not even the loop's executor


async def test_temporary_dns_failures_are_reported_not_cached(dns_zone):
    _spf_records(dns_zone)
    dns_zone.set_behaviour("_spf2.sender.example", "servfail")
    checks = _checks(dns_zone)
    assert (await _spf(checks)).result == "temperror"
    dns_zone.set_behaviour("_spf2.sender.example", None)
    assert (await _spf(checks)).result == "pass"


async def test_a_dns_server_that_never_answers_gives_temperror(dns_zone):
    dns_zone.add("slow.example", "TXT", "v=spf1 -all")
    dns_zone.set_behaviour("slow.example", "timeout")
    checks = InboundChecks(dns_zone.servers, timeout=0.5, cache_size=100)
    assert (await _spf(checks, "ann@slow.example")).result == "temperror"


# --- DKIM -------------------------------------------------------------------------------

async def test_dkim_verifies_every_signature_and_caches_the_key(dns_zone):
    signer, other = DkimKey("signer.example"), DkimKey("other.example", selector="s2")
    signer.publish(dns_zone)
    other.publish(dns_zone)
    checks = _checks(dns_zone)
    raw = other.sign(signer.sign(_message("ann@signer.example")))
    tampered = signer.sign(_message("ann@signer.example", subject="Pay 10")).replace(b"Pay 10", b"Pay 99")
    assert await checks.dkim(raw) == (DkimResult("other.example", True), DkimResult("signer.example", True))
    assert await checks.dkim(tampered) == (DkimResult("signer.example", False),)
    assert await checks.dkim(_message("ann@signer.example")) == ()
    assert _queries(dns_zone, signer.record_name) == 1


async def test_dkim_fails_when_the_key_cannot_be_found(dns_zone):
    signer = DkimKey("signer.example")
    dns_zone.add(signer.record_name, "TXT", "v=spf1 -all")  # not a key
    unpublished = DkimKey("unpublished.example")
    broken = DkimKey("broken.example")
    broken.publish(dns_zone)
    dns_zone.set_behaviour(broken.record_name, "servfail")
    checks = _checks(dns_zone)
    for key in (signer, unpublished, broken):
        assert await checks.dkim(key.sign(_message(f"ann@{key.domain}"))) == (DkimResult(key.domain, False),)


async def test_dkim_of_a_large_message(dns_zone):
    signer = DkimKey("signer.example")
    signer.publish(dns_zone)
    big = _message("ann@signer.example").replace(b"Hi there", b"x" * 600_000)
    assert await _checks(dns_zone).dkim(signer.sign(big)) == (DkimResult("signer.example", True),)


# --- DMARC ------------------------------------------------------------------------------

async def _dmarc(zone: LoopbackDNS, from_address: str, *, spf_domain: str | None = None,
                 signer: DkimKey | None = None) -> DmarcOutcome:
    """DMARC of a message From ``from_address`` whose SPF passed for ``spf_domain`` and which
    ``signer`` signed (the key is published)."""
    checks = _checks(zone)
    raw = _message(from_address)
    if signer is not None:
        signer.publish(zone)
        raw = signer.sign(raw)
    spf = SpfOutcome(result="pass", domain=spf_domain) if spf_domain else None
    return await checks.dmarc(raw, spf, await checks.dkim(raw))


async def test_dmarc_record_of_the_organizational_domain_under_a_two_label_suffix(dns_zone):
    dns_zone.add("_dmarc.example.co.uk", "TXT", "v=DMARC1; p=quarantine")
    outcome = await _dmarc(dns_zone, "ann@mail.example.co.uk", spf_domain="bounce.example.co.uk")
    assert outcome == DmarcOutcome(result="pass", policy="quarantine", domain="example.co.uk")
    assert _queries(dns_zone, "_dmarc.mail.example.co.uk") == 1  # the author domain was asked first
    assert _queries(dns_zone, "_dmarc.co.uk") == 0


async def test_dmarc_subdomain_policy_applies_to_subdomains_only(dns_zone):
    dns_zone.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject; sp=quarantine")
    sub = await _dmarc(dns_zone, "ann@news.example.com")
    top = await _dmarc(dns_zone, "ann@example.com")
    assert sub == DmarcOutcome(result="fail", policy="quarantine", domain="example.com")
    assert top == DmarcOutcome(result="fail", policy="reject", domain="example.com")


async def test_dmarc_record_of_the_author_domain_itself_comes_first(dns_zone):
    dns_zone.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject; sp=reject")
    dns_zone.add("_dmarc.news.example.com", "TXT", "v=DMARC1; p=none")
    outcome = await _dmarc(dns_zone, "ann@news.example.com", spf_domain="news.example.com")
    assert outcome == DmarcOutcome(result="pass", policy="none", domain="news.example.com")


async def test_dmarc_relaxed_alignment_accepts_sibling_subdomains_and_strict_does_not(dns_zone):
    dns_zone.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject")
    dns_zone.add("_dmarc.strict.example", "TXT", "v=DMARC1; p=reject; aspf=s; adkim=s")
    relaxed = await _dmarc(dns_zone, "ann@news.example.com", spf_domain="bounce.example.com")
    strict = await _dmarc(dns_zone, "ann@news.strict.example", spf_domain="bounce.strict.example",
                          signer=DkimKey("strict.example"))
    assert relaxed == DmarcOutcome(result="pass", policy="reject", domain="example.com")
    assert strict == DmarcOutcome(result="fail", policy="reject", domain="strict.example")


async def test_dmarc_passes_on_an_aligned_dkim_signature_alone(dns_zone):
    dns_zone.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject")
    outcome = await _dmarc(dns_zone, "ann@news.example.com", spf_domain="elsewhere.example",
                           signer=DkimKey("example.com"))
    assert outcome == DmarcOutcome(result="pass", policy="reject", domain="example.com")


async def test_dmarc_fails_when_only_unaligned_domains_passed(dns_zone):
    dns_zone.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject")
    outcome = await _dmarc(dns_zone, "ann@example.com", spf_domain="example.net", signer=DkimKey("example.org"))
    assert outcome == DmarcOutcome(result="fail", policy="reject", domain="example.com")


async def test_dmarc_without_a_record_is_none(dns_zone):
    dns_zone.add("example.com", "TXT", "v=spf1 -all")
    dns_zone.add("_dmarc.example.com", "TXT", "not a dmarc record")
    assert await _dmarc(dns_zone, "ann@example.com", spf_domain="example.com") == DmarcOutcome()
    assert await _dmarc(dns_zone, "ann@no-record.example", spf_domain="no-record.example") == DmarcOutcome()
    checks = _checks(dns_zone)
    assert await checks.dmarc(b"Subject: no From\r\n\r\nbody", None, ()) == DmarcOutcome()


@pytest.mark.parametrize("records", [["v=DMARC1; p=reject", "v=DMARC1; p=none"], ["v=DMARC1; p=block"]],
                         ids=["two records", "no valid policy"])
async def test_dmarc_records_that_cannot_apply_are_permerror(dns_zone, records):
    for record in records:
        dns_zone.add("_dmarc.example.com", "TXT", record)
    outcome = await _dmarc(dns_zone, "ann@example.com", spf_domain="example.com")
    assert outcome == DmarcOutcome(result="permerror", domain="example.com")


async def test_dmarc_temporary_dns_failure_is_temperror(dns_zone):
    dns_zone.add("_dmarc.example.com", "TXT", "v=DMARC1; p=reject")
    dns_zone.set_behaviour("_dmarc.example.com", "servfail")
    assert await _dmarc(dns_zone, "ann@example.com", spf_domain="example.com") == DmarcOutcome(result="temperror")


async def test_dmarc_of_an_internationalized_author_domain(dns_zone):
    dns_zone.add("_dmarc.xn--bcher-kva.example", "TXT", "v=DMARC1; p=none")
    outcome = await _dmarc(dns_zone, "ann@bücher.example", spf_domain="xn--bcher-kva.example")
    assert outcome == DmarcOutcome(result="pass", policy="none", domain="xn--bcher-kva.example")
