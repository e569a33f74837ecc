"""DMARC's pure parts: the author domain, record parsing, organizational domains (the Public
Suffix List shipped in publicsuffixlist) and alignment. The checks against DNS are in
tests/unit/test_inbound_checks.py."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from publicsuffixlist import PublicSuffixList

from conduit.mail.authentication import from_domain, from_field, signing_domain
from conduit.mail.dmarc import (
    DmarcRecord,
    InvalidRecord,
    aligned,
    is_dmarc_record,
    organizational_domain,
    parse_record,
)


@pytest.fixture(scope="module")
def psl() -> PublicSuffixList:
    return PublicSuffixList()


# --- the author domain ------------------------------------------------------------------

def test_author_domain_comes_from_the_first_from_address():
    raw = b"From: Ann <ann@Mail.Example.ORG>\r\nTo: b@c.d\r\n\r\nFrom: body@not.this\r\n"
    assert from_domain(raw) == "mail.example.org"


@pytest.mark.parametrize(("raw", "domain"), [
    (b"Subject: x\r\n\r\nbody", ""),
    (b"\r\nFrom: a@body.example\r\n", ""),  # no header block: that From is body text
    (b"Resent-From: a@resent.example\r\nFROM : Ann\r\n <ann@folded.example>\r\n\r\n", "folded.example"),
    (b"From: a@first.example, b@second.example\nTo: x@y.z\n\nbody", "first.example"),
    (b"From: =?utf-8?q?Ann_=C3=A9?= <ann@encoded.example>\r\n\r\n", "encoded.example"),
    (b"From: undisclosed-recipients:;\r\n\r\n", ""),
    (b"From: Ann <ann@example.org>", "example.org"),  # headers only, no body
    (b"From: <sender@Plain.Example>\r\n\r\n", "plain.example"),
    (b"From: Ann <ann@x.example> (a comment)\r\n\r\n", "x.example"),
    (b'From: "a@b.example" <c@d.example>\r\n\r\n', "d.example"),
    (b"From: <>\r\n\r\n", ""),
])
def test_author_domain_cases(raw, domain):
    assert from_domain(raw) == domain


# The definitions that from_field and signing_domain compute without a regular expression.
_FROM_FIELD = re.compile(rb"^from[ \t]*:((?:[^\r\n]|\r?\n[ \t])*)", re.IGNORECASE | re.MULTILINE)
_SIGNING_DOMAIN = re.compile(rb"(?:^|;)\s*d\s*=\s*([^;\s]+)", re.IGNORECASE)


_FIELD_VALUE = st.lists(st.sampled_from([b"a@b.example", b" ", b"\t", b"\r\n ", b"\n\t", b"\r", b"\r\n", b"\n",
                                         b"<x@y.example>"]), max_size=6).map(b"".join)
_HEADER_LINE = st.tuples(st.sampled_from([b"From", b"from", b"FROM", b"Fro", b"Resent-From", b"To", b""]),
                         st.sampled_from([b"", b" ", b"\t", b" \t"]), st.sampled_from([b":", b"", b";"]),
                         _FIELD_VALUE, st.sampled_from([b"\r\n", b"\n", b"\r", b""])).map(b"".join)


@settings(max_examples=3000, deadline=None)
@given(st.lists(_HEADER_LINE, max_size=5).map(b"".join))
def test_the_from_field_is_the_one_its_expression_finds(head):
    match = _FROM_FIELD.search(head)
    assert from_field(head) == (match.group(1) if match else None)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from([b"d", b"D", b"=", b";", b" ", b"\t", b"\r\n", b"\n", b"\x0b", b"\x0c",
                                 b"example.org", b"s", b"b", b"-"]), max_size=25).map(b"".join))
def test_the_signing_domain_is_the_one_its_expression_finds(signature):
    match = _SIGNING_DOMAIN.search(signature.replace(b"\r\n", b""))
    assert signing_domain(signature) == (match.group(1) if match else b"")


# --- records ----------------------------------------------------------------------------

def test_a_record_is_dmarc_when_its_first_tag_is_v_dmarc1():
    assert is_dmarc_record("v=DMARC1; p=none")
    assert is_dmarc_record("v = DMARC1;p=reject")
    assert not is_dmarc_record("p=reject; v=DMARC1")
    assert not is_dmarc_record("v=spf1 -all")
    assert not is_dmarc_record("v=DMARC10; p=none")


def test_record_defaults_are_relaxed_alignment_and_no_subdomain_policy():
    assert parse_record("v=DMARC1; p=quarantine; rua=mailto:d@example.com") == DmarcRecord(
        policy="quarantine", subdomain_policy=None, strict_dkim=False, strict_spf=False)


def test_record_tags_are_read_case_insensitively_and_unknown_tags_are_ignored():
    record = parse_record("v=DMARC1;P=Reject; SP=none ; adkim=S;aspf=s; pct=50; fo=1; x-future=yes")
    assert record == DmarcRecord(policy="reject", subdomain_policy="none", strict_dkim=True, strict_spf=True)


def test_bad_alignment_modes_fall_back_to_relaxed():
    record = parse_record("v=DMARC1; p=none; adkim=x; aspf=")
    assert (record.strict_dkim, record.strict_spf) == (False, False)


@pytest.mark.parametrize("text", ["v=DMARC1", "v=DMARC1; p=block", "v=DMARC1; p=none; sp=drop", "v=DMARC1; rua="])
def test_a_record_without_a_valid_policy_is_invalid(text):
    with pytest.raises(InvalidRecord):
        parse_record(text)


def test_a_record_with_a_bad_policy_but_a_report_address_counts_as_p_none():
    """RFC 7489 6.6.3 step 6."""
    assert parse_record("v=DMARC1; p=block; sp=drop; rua=mailto:d@example.com") == DmarcRecord(
        policy="none", subdomain_policy=None, strict_dkim=False, strict_spf=False)


# --- organizational domains and alignment -----------------------------------------------

@pytest.mark.parametrize(("domain", "organizational"), [
    ("example.com", "example.com"),
    ("news.example.com", "example.com"),
    ("a.b.c.example.com", "example.com"),
    ("mail.example.co.uk", "example.co.uk"),
    ("example.co.uk", "example.co.uk"),
    ("co.uk", "co.uk"),  # a public suffix is its own
    ("Mail.Example.ORG.", "example.org"),
    ("news.bench.example", "bench.example"),  # a suffix the list does not know counts as one label
])
def test_organizational_domain_follows_the_public_suffix_list(psl, domain, organizational):
    assert organizational_domain(psl, domain) == organizational


@pytest.mark.parametrize(("domain", "author", "relaxed", "strict"), [
    ("example.com", "example.com", True, True),
    ("bounce.example.com", "news.example.com", True, False),  # siblings under one organizational domain
    ("example.com", "news.example.com", True, False),
    ("mail.example.co.uk", "example.co.uk", True, False),
    ("example.co.uk", "other.co.uk", False, False),  # two registrants under a public suffix
    ("evil-example.com", "example.com", False, False),
    ("example.com.evil.net", "example.com", False, False),
    ("EXAMPLE.com.", "example.COM", True, True),
    ("", "example.com", False, False),
])
def test_alignment(psl, domain, author, relaxed, strict):
    assert aligned(psl, domain, author, strict=False) is relaxed
    assert aligned(psl, domain, author, strict=True) is strict
