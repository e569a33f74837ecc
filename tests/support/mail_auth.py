"""Test credentials made on the spot: a trustme CA with a server certificate for the SMTP
server's STARTTLS, and RSA keys that sign mail with dkimpy and publish their DKIM record."""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass
from pathlib import Path

import dkim
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass
class TlsFiles:
    """A CA and a server certificate for 127.0.0.1/localhost, written where Conduit reads them."""

    ca: trustme.CA
    cert: Path
    key: Path

    @classmethod
    def create(cls, directory: Path) -> TlsFiles:
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        cert, key = directory / "smtp-cert.pem", directory / "smtp-key.pem"
        server.private_key_pem.write_to_path(str(key))
        cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
        return cls(ca=ca, cert=cert, key=key)

    def client_context(self) -> ssl.SSLContext:
        """What a sending server would use: verifies the certificate and the host name."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@dataclass
class DkimKey:
    """An RSA key for ``selector._domainkey.domain``, able to sign messages with dkimpy."""

    domain: str
    selector: str = "sel"
    bits: int = 2048

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=self.bits)

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def record(self) -> str:
        """The TXT record a domain owner publishes (p= is the base64 DER public key)."""
        der = self._key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"

    def publish(self, dns) -> None:
        dns.add(self.record_name, "TXT", self.record)

    @property
    def private_pem(self) -> bytes:
        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption())

    def sign(self, message: bytes) -> bytes:
        """``message`` (CRLF line endings) with a DKIM-Signature header prepended."""
        signature = dkim.sign(message, self.selector.encode(), self.domain.encode(), self.private_pem,
                              include_headers=[b"From", b"To", b"Subject", b"Date", b"Message-ID"])
        return signature + message
