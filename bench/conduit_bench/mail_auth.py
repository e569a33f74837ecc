"""The sending domain of the load, so that Conduit's default inbound checks (SPF, DKIM, DMARC) do
real work: its DNS records on an authoritative DNS server on loopback, a DKIM key, and the
DKIM-signed messages the load sends.

The DNS server is the project's test server (tests/support/dns_server.py, dnslib, in a thread of
the harness). Conduit caches what it looks up for the records' TTL, so after the warm-up it asks
again only when a TTL runs out; the queries it makes during each measured load are counted.
"""

from __future__ import annotations

import base64
from email.utils import formatdate
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conduit_bench.settings import DOMAIN, SENDER
from tests.support.dns_server import LoopbackDNS

SENDER_DOMAIN = SENDER.rpartition("@")[2]
SELECTOR = "bench"
TTL = 300  # seconds; a common TTL for these records
RECORDS = [  # (name, TXT value): SPF through two includes, 127.0.0.1 allowed by the second; DMARC p=reject
    (SENDER_DOMAIN, f"v=spf1 include:_spf.{SENDER_DOMAIN} include:_spf2.{SENDER_DOMAIN} ~all"),
    (f"_spf.{SENDER_DOMAIN}", "v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.0/24 ip6:2001:db8::/32 -all"),
    (f"_spf2.{SENDER_DOMAIN}", "v=spf1 ip4:127.0.0.0/8 ip6:::1 -all"),
    (f"_dmarc.{SENDER_DOMAIN}", f"v=DMARC1; p=reject; rua=mailto:dmarc@{SENDER_DOMAIN}"),
]
SIGNED_HEADERS = [b"From", b"To", b"Subject", b"Date"]  # not Message-ID: the latency run sets one per message


class SendingDomain:
    """The sender's zone on a loopback DNS server, and its DKIM key (RSA 2048)."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._pem = self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                            serialization.NoEncryption())
        der = self._key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        self.records = [*RECORDS, (f"{SELECTOR}._domainkey.{SENDER_DOMAIN}",
                                   f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}")]
        self.dns = LoopbackDNS()
        for name, value in self.records:
            self.dns.add(name, "TXT", value, ttl=TTL)

    def start(self) -> None:
        self.dns.start()

    def stop(self) -> None:
        self.dns.stop()

    @property
    def servers(self) -> str:
        """The value of CONDUIT_DNS_SERVERS."""
        return f"{self.dns.host}:{self.dns.port}"

    def queries(self) -> int:
        return len(self.dns.queries)

    def signed(self, size: int) -> bytes:
        """A message (CRLF line endings, without Message-ID) with ``size`` bytes of body, signed."""
        line = b"X" * 76 + b"\r\n"
        body = (line * (size // len(line) + 1))[:size] + b"\r\n"
        head = (f"From: <{SENDER}>\r\nTo: <box@{DOMAIN}>\r\nSubject: bench\r\n"
                f"Date: {formatdate(usegmt=True)}\r\n\r\n").encode()
        message = head + body
        return dkim.sign(message, SELECTOR.encode(), SENDER_DOMAIN.encode(), self._pem,
                         include_headers=SIGNED_HEADERS) + message

    def message_file(self, size: int, directory: Path) -> Path:
        """The signed message as ``smtp-source -F`` sends it: it turns each line into one ending
        in CRLF, so the file has LF line endings."""
        path = directory / f"signed-{size}.eml"
        path.write_bytes(self.signed(size).replace(b"\r\n", b"\n"))
        return path
