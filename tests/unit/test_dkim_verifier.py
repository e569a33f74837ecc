"""DkimVerifier (dkimpy with OpenSSL's RSA) against its oracle, dkimpy's own verifier: the same
verdict, or the same kind of error, for signatures that pass and for every way they can fail;
and its message split against dkimpy's parser on the payload corpus. Keys are published on the
real loopback DNS server and read from it by both verifiers."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path

import dkim
import dns.resolver
import pytest
from dkim.canonicalization import Relaxed
from hypothesis import given, settings
from hypothesis import strategies as st

from conduit.mail.dkim_verifier import (
    DkimVerifier,
    FastRelaxed,
    KeyCache,
    parse_tags,
    plainly_valid,
    split_message,
    without_b_tag,
)
from tests.support.dns_server import LoopbackDNS
from tests.support.mail_auth import DkimKey

MESSAGE = (b"From: Ann <ann@signer.example>\r\nTo: box@in.example\r\nSubject: Hello\r\n"
           b"Date: Mon, 02 Jun 2025 10:00:00 +0000\r\nMessage-ID: <1@signer.example>\r\n\r\n"
           b"Hi there,\r\n  with  spaces \t and tabs  \r\n\r\n\r\n")


@pytest.fixture(scope="module")
def zone() -> LoopbackDNS:
    with LoopbackDNS() as server:
        yield server


@pytest.fixture(scope="module")
def key(zone: LoopbackDNS) -> DkimKey:
    key = DkimKey("signer.example")
    key.publish(zone)
    return key


@pytest.fixture(scope="module")
def txt(zone: LoopbackDNS) -> Callable[..., bytes | None]:
    """dkimpy's dnsfunc, answered by the loopback DNS server."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [zone.host]
    resolver.nameserver_ports = {zone.host: zone.port}

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode(), "TXT", lifetime=timeout)
        except dns.exception.DNSException:
            return None
        return b"".join(answer[0].strings)

    return lookup


def _sign(key: DkimKey, message: bytes = MESSAGE, selector: str | None = None, **options) -> bytes:
    options.setdefault("include_headers", [b"From", b"To", b"Subject", b"Date", b"Message-ID"])
    options.setdefault("canonicalize", (b"simple", b"simple"))
    selector = selector or key.selector
    return dkim.sign(message, selector.encode(), key.domain.encode(), key.private_pem, **options) + message


def _verdict(verify: Callable[[], object]) -> object:
    try:
        return bool(verify())
    except Exception as exc:  # noqa: BLE001 - the kind of error is the verdict
        return type(exc).__name__


def _both(raw: bytes, txt, idx: int = 0) -> tuple[object, object]:
    ours = _verdict(lambda: DkimVerifier(raw, KeyCache()).verify(idx=idx, dnsfunc=txt))
    oracle = _verdict(lambda: dkim.DKIM(raw).verify(idx=idx, dnsfunc=txt))
    return ours, oracle


def _replace_tag(raw: bytes, tag: bytes, value: bytes) -> bytes:
    """The DKIM-Signature with tag ``tag`` set to ``value`` (the signature itself is kept)."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    unfolded = head.replace(b"\r\n ", b" ").replace(b"\r\n\t", b"\t")
    lines = unfolded.split(b"\r\n")
    signature = lines[0]
    parts = list(signature.split(b";"))
    for i, part in enumerate(parts):
        if part.strip().startswith(tag + b"="):
            parts[i] = b" " + tag + b"=" + value
    return b"\r\n".join([b";".join(parts), *lines[1:]]) + b"\r\n\r\n" + rest


def _add_tag(raw: bytes, tag: bytes, value: bytes) -> bytes:
    """The DKIM-Signature (the first header) with ``tag=value`` put before its ``b=``."""
    return raw.replace(b" b=", b" " + tag + b"=" + value + b"; b=", 1)


CASES: dict[str, Callable[[DkimKey, DkimKey], bytes]] = {
    "simple/simple": lambda key, other: _sign(key),
    "relaxed/relaxed": lambda key, other: _sign(key, canonicalize=(b"relaxed", b"relaxed")),
    "relaxed/simple": lambda key, other: _sign(key, canonicalize=(b"relaxed", b"simple")),
    "simple/relaxed": lambda key, other: _sign(key, canonicalize=(b"simple", b"relaxed")),
    "relaxed refolded headers": lambda key, other: _sign(key, canonicalize=(b"relaxed", b"relaxed")).replace(
        b"Subject: Hello", b"Subject:   Hello\r\n  "),
    "simple refolded headers": lambda key, other: _sign(key).replace(b"Subject: Hello", b"Subject:  Hello"),
    "relaxed body whitespace": lambda key, other: _sign(key, canonicalize=(b"relaxed", b"relaxed")).replace(
        b"with  spaces", b"with spaces"),
    "l= with text appended": lambda key, other: _sign(key, length=True) + b"appended\r\n",
    "text appended without l=": lambda key, other: _sign(key) + b"appended\r\n",
    "subject changed": lambda key, other: _sign(key).replace(b"Subject: Hello", b"Subject: Hullo"),
    "body changed": lambda key, other: _sign(key).replace(b"Hi there", b"Hi thor"),
    "second From added": lambda key, other: _sign(key).replace(b"To: box", b"From: evil@elsewhere.example\r\nTo: box"),
    "second From prepended": lambda key, other: b"From: evil@elsewhere.example\r\n" + _sign(key),
    "unsigned header added": lambda key, other: b"X-Added: yes\r\n" + _sign(key),
    "verified with another key": lambda key, other: _sign(key, selector="wrongkey"),
    "b= altered": lambda key, other: _altered_b(_sign(key)),
    "b= empty": lambda key, other: _replace_tag(_sign(key), b"b", b""),
    "b= not base64": lambda key, other: _replace_tag(_sign(key), b"b", b"%%%%"),
    "b= short": lambda key, other: _replace_tag(_sign(key), b"b", base64.b64encode(b"\x00\x01" * 8)),
    "bh= altered": lambda key, other: _replace_tag(_sign(key), b"bh", base64.b64encode(b"\x00" * 32)),
    "c= unknown": lambda key, other: _replace_tag(_sign(key), b"c", b"strange/simple"),
    "a= rsa-sha1": lambda key, other: _sign(key, signature_algorithm=b"rsa-sha1"),
    "a= unknown": lambda key, other: _replace_tag(_sign(key), b"a", b"rsa-md5"),
    "no key published": lambda key, other: _replace_tag(_sign(key), b"s", b"missing"),
    "key record not a key": lambda key, other: _replace_tag(_sign(key), b"s", b"notakey"),
    "h= without From": lambda key, other: _replace_tag(_sign(key), b"h", b"to : subject"),
    "x= expired": lambda key, other: _add_tag(_sign(key), b"x", b"1000"),
    "x= in the future": lambda key, other: _add_tag(_sign(key), b"x", b"99999999999"),
    "l= beyond the body": lambda key, other: _add_tag(_sign(key), b"l", b"999999"),
}


def _altered_b(raw: bytes) -> bytes:
    start = raw.index(b" b=") + 3
    char = raw[start + 10:start + 11]
    return raw[:start + 10] + (b"A" if char != b"A" else b"B") + raw[start + 11:]


@pytest.fixture(scope="module")
def other(zone: LoopbackDNS) -> DkimKey:
    other = DkimKey("other.example", selector="s2")
    other.publish(zone)
    zone.add("notakey._domainkey.signer.example", "TXT", "v=spf1 -all")
    zone.add("wrongkey._domainkey.signer.example", "TXT", other.record)
    return other


@pytest.mark.parametrize("case", list(CASES))
def test_same_verdict_as_dkimpy(case, key, other, txt):
    ours, oracle = _both(CASES[case](key, other), txt)
    assert ours == oracle, (ours, oracle)


def test_the_cases_cover_passes_failures_and_errors(key, other, txt):
    verdicts = {case: _both(make(key, other), txt)[1] for case, make in CASES.items()}
    assert verdicts["relaxed/relaxed"] is True
    assert verdicts["l= with text appended"] is True
    assert verdicts["simple refolded headers"] is False
    assert verdicts["relaxed refolded headers"] is True
    assert verdicts["subject changed"] is False
    assert verdicts["second From prepended"] is False  # dkimpy signs one From more than h= names
    assert verdicts["verified with another key"] is False
    assert verdicts["x= expired"] == "ValidationError"
    assert verdicts["body changed"] == "ValidationError"
    assert verdicts["no key published"] is False


def test_every_signature_of_a_message(key, other, txt):
    raw = _sign(other, _sign(key))
    assert [_both(raw, txt, idx) for idx in (0, 1)] == [(True, True), (True, True)]


def test_a_key_is_parsed_once_per_record_text(key, txt):
    keys = KeyCache()
    raw = _sign(key)
    assert DkimVerifier(raw, keys).verify(dnsfunc=txt)
    first = keys.get(b"sel._domainkey.signer.example.", txt(b"sel._domainkey.signer.example."))
    assert DkimVerifier(raw, keys).verify(dnsfunc=txt)
    assert keys.get(b"sel._domainkey.signer.example.", txt(b"sel._domainkey.signer.example.")) is first


# --- the message split --------------------------------------------------------------------

CORPUS = sorted((Path(__file__).parent / "payload_corpus").glob("*.eml"))
EDGES = [
    b"", b"\r\n", b"\n", b"\r\nbody\n", b"\nFrom: a\r\n", b"From: a", b"From: a\r\n", b"From: a\r\n\r\n",
    b"From: a\n\nbody\nmore\n", b"From: a\r\n\r\nbody\r\n\r\n\r\n", b"From: a\r\n\nmixed\r\nends\n",
    b"a: b\r\r\n\r\nx\r\r\n",
    b"Subject: x\r\n folded\r\n\tagain\r\nTo: y\r\n\r\nbody", b"From sender@example.org Mon Jun  2\r\nTo: y\r\n\r\nb",
    b"no colon here\r\n\r\nbody", b" leading space\r\n\r\nbody", b"X-\x80: 8bit name\r\n\r\n", b"A:b\n\n\n\nbody\r",
]


def _split(parse: Callable[[bytes], tuple], raw: bytes) -> object:
    try:
        return parse(raw)
    except Exception as exc:  # noqa: BLE001 - the kind of error is the result
        return type(exc).__name__


@pytest.mark.parametrize("raw", [path.read_bytes() for path in CORPUS] + EDGES,
                         ids=[path.stem for path in CORPUS] + [f"edge{i}" for i in range(len(EDGES))])
def test_the_message_split_is_dkimpys(raw):
    assert _split(split_message, raw) == _split(dkim.rfc822_parse, raw)


_TEXT = st.lists(st.sampled_from([b" ", b"  ", b"\t", b"\r\n", b"\n", b"\r", b"word", b"\x0b", b"\xc3\xa9", b":"]),
                 max_size=30).map(b"".join)


@settings(max_examples=2000, deadline=None)
@given(_TEXT)
def test_the_relaxed_body_is_dkimpys(body):
    assert FastRelaxed.canonicalize_body(body) == Relaxed.canonicalize_body(body)


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([b"Subject", b"FROM ", b"x-a\t"]), _TEXT), max_size=4))
def test_relaxed_header_fields_are_dkimpys(fields):
    assert FastRelaxed.canonicalize_headers(fields) == Relaxed.canonicalize_headers(fields)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from([b"b=", b" b =", b";b\r\n =", b"bh=", b"a", b"Z9+/", b"=", b" ", b"\t", b"\r\n",
                                 b"\n", b";", b"-", b"\r\n ", b"b", b"\x0b", b"\x0c", b"\r"]),
                max_size=30).map(b"".join))
def test_the_b_tag_is_taken_out_as_dkimpy_does(value):
    assert without_b_tag(value) == dkim.RE_BTAG.sub(b"\\1", value)


# --- the signature's tags -----------------------------------------------------------------

_TAG_PIECES = st.sampled_from([b"v", b"a", b"b", b"bh", b"d", b"=", b";", b" ", b"\t", b"\r\n ", b"1", b"9x",
                               b"_", b"\xc3\xa9", b"A+/", b"==", b"-"])


@settings(max_examples=3000, deadline=None)
@given(st.lists(_TAG_PIECES, max_size=25).map(b"".join))
def test_the_tags_are_read_as_dkimpy_reads_them(value):
    assert _split(parse_tags, value) == _split(dkim.util.parse_tag_value, value)


_NOW = int(time.time())
_MANDATORY = (b"v", b"a", b"b", b"bh", b"d", b"h", b"s")
_SIGNATURE_TAGS = {
    b"v": [b"1", b"2", b""],
    b"a": [b"rsa-sha256", b"rsa-sha1", b"ed25519-sha256", b"rsa-md5"],
    b"b": [b"QUJD", b"QUJDRA==", b"QU JD", b"QUJ", b"%%%%", b"", b"QUJD\r\n RA=="],
    b"bh": [b"QUJD", b"QUJ", b"", b"Q U J D", b"%%%%"],
    b"c": [b"relaxed/simple", b"strange"],
    b"d": [b"signer.example", b"Signer.Example", b"a@b", b"sign\xc3\xa9r.example", b""],
    b"h": [b"from : to", b"from"],
    b"i": [b"@signer.example", b"x@SIGNER.example", b"sub.signer.example", b"signer.example", b"r.example",
           b"@other.example", b"xsigner.example"],
    b"l": [b"100", b"1x", b"", b"9" * 77],
    b"q": [b"dns/txt", b"dns"],
    b"s": [b"sel"],
    b"t": [str(_NOW).encode(), str(_NOW + 30000).encode(), str(_NOW + 40000).encode(), b"12a", b""],
    b"x": [str(_NOW + 1000).encode(), b"1000"],
    b"cv": [b"pass"],
    b"z": [b"anything"],
}


@settings(max_examples=5000, deadline=None)
@given(st.fixed_dictionaries(
    {tag: st.sampled_from(values) for tag, values in _SIGNATURE_TAGS.items() if tag in _MANDATORY},
    optional={tag: st.sampled_from(values) for tag, values in _SIGNATURE_TAGS.items() if tag not in _MANDATORY}))
def test_tags_called_plainly_valid_pass_dkimpys_checks(sig):
    if plainly_valid(sig):
        dkim.validate_signature_fields(sig)  # raises when the shortcut would have let a bad signature through


def test_a_signature_missing_a_mandatory_tag_is_left_to_dkimpy():
    usual = {b"v": b"1", b"a": b"rsa-sha256", b"b": b"QUJD", b"bh": b"QUJD", b"d": b"signer.example",
             b"h": b"from", b"s": b"sel"}
    assert plainly_valid(usual)
    for tag in _MANDATORY:
        assert not plainly_valid({name: value for name, value in usual.items() if name != tag})


def test_usual_signatures_take_the_shortcut(key):
    for options in ({}, {"canonicalize": (b"relaxed", b"relaxed")}, {"length": True}):
        raw = _sign(key, **options)
        verifier = DkimVerifier(raw, KeyCache())
        signature = next(value for name, value in verifier.headers if name.lower() == b"dkim-signature")
        assert plainly_valid(parse_tags(signature))
