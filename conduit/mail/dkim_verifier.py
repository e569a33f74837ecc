"""dkimpy's DKIM verifier with the RSA step done by OpenSSL, and parsed keys kept.

Why: dkimpy checks RSA signatures in pure Python (``pow`` on 2048-bit integers and byte-by-byte
conversions), which makes DKIM most of the SMTP server's CPU per message with the default
inbound checks (docs/performance.md, "DKIM verifier"). `DkimVerifier` is dkimpy's ``DKIM``
class with four of its steps replaced: ``verify_sig`` takes the parsed key from a `KeyCache`
(keyed by the key record's text, so a changed record is parsed anew), ``verify_sig_process``
verifies ``rsa-sha256`` signatures with the ``cryptography`` package, ``set_message`` splits
only the header block into lines (`split_message`, compared with dkimpy's parser on the payload
corpus), and ``verify_headerprep`` reads the signature's tags with `parse_tags` and passes a
signature whose tags are plainly valid (`plainly_valid`) without dkimpy's checks (their ``re``
calls by pattern text, and a debug message formatted whether or not it is logged, cost more
than the checks); any other signature gets dkimpy's checks and their error.
Everything else stays dkimpy's: canonicalization, header selection, ``l=``, the minimum key size.
Other algorithms (``rsa-sha1``, ``ed25519-sha256``) go through dkimpy unchanged. dkimpy's own
verification, tag parser and tag checks are the oracles of tests/unit/test_dkim_verifier.py.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dkim  # type: ignore[import-untyped]
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from dkim.canonicalization import (  # type: ignore[import-untyped]
    CanonicalizationPolicy,
    InvalidCanonicalizationPolicyError,
    Relaxed,
    correct_empty_body,
    strip_trailing_lines,
)
from dkim.crypto import HASH_ALGORITHMS  # type: ignore[import-untyped]
from dkim.util import (  # type: ignore[import-untyped]
    DuplicateTag,
    InvalidTagSpec,
    InvalidTagValueList,
    get_default_logger,
)

from conduit.mail.header_end import header_end

# dkimpy's own expressions for the checks of a signature's tags (validate_signature_fields), compiled once.
_BASE64_VALUE = re.compile(rb"[\s0-9A-Za-z+/]+[\s=]*$")
_DOMAIN_SPECIALS = re.compile(rb"[\(\)<>\[\]:;@\\,]")
_LENGTH = re.compile(rb"\d{,76}$")
_DECIMAL = re.compile(rb"\d+$")
_H_SEPARATOR = re.compile(rb"\s*:\s*")
_MANDATORY_TAGS = (b"v", b"a", b"b", b"bh", b"d", b"h", b"s")
_PLAIN_TAGS = frozenset((*_MANDATORY_TAGS, b"c", b"i", b"l", b"q", b"t"))
_CLOCK_SLOP = 36000  # seconds a t= may lie in the future (dkimpy's leeway)
_DKIMPY_LOG = get_default_logger()  # dkimpy's own, looked up once rather than per message
_SHA256 = Prehashed(hashes.SHA256())
_LINE_END = re.compile(rb"\r?\n")
_FIELD_NAME = re.compile(rb"([\x21-\x7e]+?):")
_WSP_RUN = re.compile(rb"[\t ]+")
_TRAILING_WSP = re.compile(rb"[\t ]+\r\n")
# The value of a b= tag (what dkimpy's RE_BTAG takes out after "[;\s]b\s*="), matched where
# `without_b_tag` finds a tag: RE_BTAG says "folding white space, then a base64 character" for
# every character and backtracks through each; this is the same match in linear time.
_B_VALUE = re.compile(rb"(?:[\sa-zA-Z0-9+/=]*[a-zA-Z0-9+/=])?(?:\r?\n\Z)?")
_SPACE = b" \t\n\r\x0b\x0c"  # what \s matches in a bytes pattern


class FastRelaxed(Relaxed):  # type: ignore[misc]
    """dkimpy's relaxed canonicalization with the same expressions, compiled once, and each pass
    skipped when a search in C shows it would change nothing (most header fields and bodies
    have no tab, no double space and no space before a line break). dkimpy's ``Relaxed`` is the
    oracle (tests/unit/test_dkim_verifier.py)."""

    @staticmethod
    def canonicalize_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        fields = []
        for name, raw_value in headers:
            value = raw_value[:-2] if raw_value.endswith(b"\r\n") else raw_value  # each field ends in CRLF
            if b"\n" in value:  # unfold: _LINE_END.sub(b"", raw_value), without a regular expression
                value = raw_value.replace(b"\r\n", b"").replace(b"\n", b"")
            if b"\t" in value or b"  " in value:
                value = _WSP_RUN.sub(b" ", value)
            fields.append((name.lower().rstrip(), value.strip() + b"\r\n"))
        return fields

    @staticmethod
    def canonicalize_body(body: bytes) -> bytes:
        if b" \r\n" in body or b"\t\r\n" in body:
            body = _TRAILING_WSP.sub(b"\r\n", body)
        if b"\t" in body or b"  " in body:
            body = _WSP_RUN.sub(b" ", body)
        return bytes(correct_empty_body(strip_trailing_lines(body)))


@functools.lru_cache(maxsize=64)  # a handful of c= values exist
def _policy(c_value: bytes) -> CanonicalizationPolicy:
    """dkimpy's policy for a c= value, with `FastRelaxed` in place of its relaxed algorithm."""
    try:
        policy = CanonicalizationPolicy.from_c_value(c_value)
    except InvalidCanonicalizationPolicyError as exc:
        raise dkim.MessageFormatError(f"invalid c= value: {exc.args[0]}") from None
    fast = {Relaxed: FastRelaxed}
    return CanonicalizationPolicy(fast.get(policy.header_algorithm, policy.header_algorithm),
                                  fast.get(policy.body_algorithm, policy.body_algorithm))


def split_message(message: bytes) -> tuple[list[list[bytes]], bytes]:
    """What ``dkim.rfc822_parse`` returns (header fields as ``[name, value]``, and the body with
    CRLF line ends), splitting only the header block into lines: dkimpy splits the whole message
    and joins the body again, a Python loop over every line of it."""
    first = _LINE_END.match(message)
    if first is not None:  # an empty first line: no header fields
        head, rest = b"", message[first.end():]
    elif (end := header_end(message)) is not None:
        head, rest = message[:end[0]], message[end[1]:]
    else:
        head, rest = message, b""
    headers: list[list[bytes]] = []
    lines = head.split(b"\r\n") if head.count(b"\n") == head.count(b"\r\n") else _LINE_END.split(head)
    for line in lines if head else ():
        if not line:  # only at the very end of a message without a body
            break
        if line[0] in (0x09, 0x20):
            headers[-1][1] += line + b"\r\n"
        elif (name := _FIELD_NAME.match(line)) is not None:
            headers.append([name.group(1), line[name.end():] + b"\r\n"])
        elif not line.startswith(b"From "):
            raise dkim.MessageFormatError(f"Unexpected characters in RFC822 header: {line!r}")
    if rest.count(b"\n") != rest.count(b"\r\n"):
        rest = _LINE_END.sub(b"\r\n", rest)
    return headers, rest


def parse_tags(value: bytes) -> dict[bytes, bytes]:
    """dkimpy's ``parse_tag_value`` (RFC 6376 3.2 tag=value lists), with the same errors, and
    without a regular expression per tag."""
    tags: dict[bytes, bytes] = {}
    specs = value.strip().split(b";")
    if not specs[-1]:  # a trailing semicolon is allowed
        specs.pop()
    for spec in specs:
        key, equals, tag_value = spec.partition(b"=")
        key = key.strip()
        if not equals or not key[:1].isalpha():  # bytes.isalpha: ASCII letters only, as [a-zA-Z]
            raise InvalidTagSpec(spec)
        if key in tags:
            raise DuplicateTag(key)
        tags[key] = tag_value.strip()
    return tags


def plainly_valid(sig: dict[bytes, bytes]) -> bool:
    """True only when dkimpy's ``validate_signature_fields`` accepts ``sig``: the usual tags, each
    value checked by dkimpy's own expressions. False means "ask dkimpy", not "invalid"."""
    if not sig.keys() <= _PLAIN_TAGS or any(tag not in sig for tag in _MANDATORY_TAGS):
        return False
    b, d = sig[b"b"], sig[b"d"]
    if sig[b"a"] not in HASH_ALGORITHMS or sig[b"v"] != b"1" or not d.isascii() or _DOMAIN_SPECIALS.search(d):
        return False
    if _BASE64_VALUE.match(b) is None or len(b"".join(b.split())) % 4 or len(b"".join(sig[b"bh"].split())) % 4:
        return False
    if (i := sig.get(b"i")) is not None and not (
            len(i) > len(d) and i.lower().endswith(d.lower()) and i[-len(d) - 1] in b"@."):
        return False
    if b"l" in sig and _LENGTH.match(sig[b"l"]) is None:
        return False
    if b"q" in sig and sig[b"q"] != b"dns/txt":
        return False
    t = sig.get(b"t")
    return t is None or (_DECIMAL.match(t) is not None and int(t) <= int(time.time()) + _CLOCK_SLOP)


_HeaderPrep = tuple[dict[bytes, bytes], list[bytes], list[tuple[bytes, bytes]]]  # tags, h= names, signature fields


@dataclass(frozen=True)
class _Key:
    pk: Any  # dkimpy's parsed key
    keysize: int | None
    ktag: bytes | None
    seqtlsrpt: bool
    openssl: rsa.RSAPublicKey | None  # the same RSA key for OpenSSL; None when it is not one


class KeyCache:
    """Parsed DKIM keys by the text of their DNS record (bounded: cleared when full)."""

    def __init__(self, max_size: int = 1024) -> None:
        self._keys: dict[bytes, _Key] = {}
        self._max_size = max_size

    def get(self, name: bytes, record: bytes | None) -> _Key:
        """The key in ``record`` (found at ``name``); raises dkimpy's KeyFormatError when missing or bad."""
        if record is not None and (key := self._keys.get(record)) is not None:
            return key
        pk, keysize, ktag, seqtlsrpt = dkim.evaluate_pk(name, record)
        key = _Key(pk=pk, keysize=keysize, ktag=ktag, seqtlsrpt=seqtlsrpt, openssl=_openssl_key(pk, ktag))
        if record is not None:
            if len(self._keys) >= self._max_size:
                self._keys.clear()
            self._keys[record] = key
        return key


def _openssl_key(pk: Any, ktag: bytes | None) -> rsa.RSAPublicKey | None:
    if ktag != b"rsa":
        return None
    try:
        return rsa.RSAPublicNumbers(pk["publicExponent"], pk["modulus"]).public_key()
    except (ValueError, TypeError, KeyError):  # e.g. an exponent OpenSSL refuses: dkimpy decides
        return None


class DkimVerifier(dkim.DKIM):  # type: ignore[misc]  # dkimpy ships no type information
    """``dkim.DKIM`` for verification, with keys from a `KeyCache` and RSA by OpenSSL."""

    def __init__(self, message: bytes, keys: KeyCache) -> None:
        super().__init__(message, logger=_DKIMPY_LOG)
        self._keys = keys
        self._openssl: rsa.RSAPublicKey | None = None

    def set_message(self, message: bytes | None) -> None:
        super().set_message(None)  # dkimpy's other per-message attributes
        if message:
            self.headers, self.body = split_message(message)

    def verify_headerprep(self, idx: int = 0) -> _HeaderPrep | bool:
        """dkimpy's ``verify_headerprep``: the ``idx``-th signature's tags, checked, and its h= list."""
        sigheaders = [(name, value) for name, value in self.headers if name.lower() == b"dkim-signature"]
        if len(sigheaders) <= idx:
            return False
        try:
            sig = parse_tags(sigheaders[idx][1])
        except InvalidTagValueList as exc:
            raise dkim.MessageFormatError(exc) from None
        self.signature_fields = sig
        if not plainly_valid(sig):
            dkim.validate_signature_fields(sig)  # raises dkimpy's ValidationError, or accepts the rest
        self.domain, self.selector = sig[b"d"], sig[b"s"]
        include_headers = [name.lower() for name in _H_SEPARATOR.split(sig[b"h"])]
        self.include_headers = tuple(include_headers)
        return sig, include_headers, sigheaders

    def verify_sig(self, sig: dict[bytes, bytes], include_headers: list[bytes], sig_header: tuple[bytes, bytes],
                   dnsfunc: Callable[..., bytes | None]) -> bool:
        name = sig[b"s"] + b"._domainkey." + sig[b"d"] + b"."
        try:
            key = self._keys.get(name, dnsfunc(name, timeout=self.timeout))
        except (dkim.KeyFormatError, binascii.Error, dkim.DnsTimeoutError) as exc:
            self.logger.error("%s", exc)
            return False
        self.pk, self.keysize, self.ktag, self.seqtlsrpt = key.pk, key.keysize, key.ktag, key.seqtlsrpt
        self._openssl = key.openssl
        return bool(self.verify_sig_process(sig, include_headers, sig_header, dnsfunc))

    def verify_sig_process(self, sig: dict[bytes, bytes], include_headers: list[bytes],
                           sig_header: tuple[bytes, bytes], dnsfunc: Callable[..., bytes | None]) -> bool:
        """dkimpy's steps for an ``rsa-sha256`` signature, the last one by OpenSSL."""
        if self._openssl is None or sig[b"a"] != b"rsa-sha256" or self.tlsrpt or self.seqtlsrpt:
            return bool(super().verify_sig_process(sig, include_headers, sig_header, dnsfunc))
        canon_policy = _policy(sig.get(b"c", b"simple/simple"))
        hasher = HASH_ALGORITHMS[sig[b"a"]]
        if b"bh" in sig:
            body = canon_policy.canonicalize_body(self.body)
            if b"l" in sig:
                body = body[:int(sig[b"l"])]
            try:
                expected = base64.b64decode(b"".join(sig[b"bh"].split()))  # bytes.split(): what \s matches
            except (TypeError, binascii.Error) as exc:
                raise dkim.MessageFormatError(str(exc)) from None
            if hasher(body).digest() != expected:
                raise dkim.ValidationError("body hash mismatch")
        if b"from" in include_headers:  # dkimpy: extra From fields are signed too (its bug 644046)
            include_headers.append(b"from")
        digest = hasher()
        # Only the fields h= can select are canonicalized (each field is canonicalized alone).
        wanted = set(include_headers)
        headers = canon_policy.canonicalize_headers(
            [field for field in self.headers if (name := field[0].lower()) in wanted or name.rstrip() in wanted])
        self.signed_headers = _hash_headers(digest, canon_policy, headers, include_headers, sig_header)
        signature = base64.b64decode(b"".join(sig[b"b"].split()))
        modulus: int = self.pk["modulus"]
        # dkimpy reads the signature as an integer modulo n: the same here, at the key's length.
        representative = (int.from_bytes(signature, "big") % modulus).to_bytes((modulus.bit_length() + 7) // 8, "big")
        try:
            self._openssl.verify(representative, digest.digest(), padding.PKCS1v15(), _SHA256)
        except InvalidSignature:
            return False
        if self.keysize is not None and self.keysize < self.minkey:
            raise dkim.KeyFormatError(f"public key too small: {self.keysize}")
        return True


def without_b_tag(value: bytes) -> bytes:
    """The DKIM-Signature field's value with the b= tag's value taken out: dkimpy's
    ``RE_BTAG.sub(b"\\1", value)``, with ``bytes.find`` looking for the tag rather than a regular
    expression tried at every byte of the field."""
    parts = []
    copied = 0  # value[copied:] is still to be copied
    at = value.find(b"b", 1)
    while at >= 0:
        end = at + 1
        if value[at - 1] in _SPACE or value[at - 1] == 0x3B:  # ";"
            while end < len(value) and value[end] in _SPACE:
                end += 1
            if end < len(value) and value[end] == 0x3D:  # "=": a b= tag
                parts.append(value[copied:end + 1])
                tag_value = _B_VALUE.match(value, end + 1)
                copied = tag_value.end() if tag_value else end + 1  # it always matches, if only b""
                at = value.find(b"b", copied + 1)
                continue
        at = value.find(b"b", at + 1)
    if not parts:
        return value
    parts.append(value[copied:])
    return b"".join(parts)


def _hash_headers(digest: Any, policy: CanonicalizationPolicy, headers: list[tuple[bytes, bytes]],
                  include_headers: list[bytes], sig_header: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """dkimpy's ``hash_headers`` with `without_b_tag`: the signed fields, then the signature field
    itself without its b= value and without a trailing line break, into ``digest``."""
    signed: list[tuple[bytes, bytes]] = dkim.select_headers(headers, include_headers)
    signature = [(name, value.rstrip()) for name, value in
                 policy.canonicalize_headers([(sig_header[0], without_b_tag(sig_header[1]))])]
    digest.update(b"".join(name + b":" + value for name, value in signed + signature))
    return signed
