"""Validation of the fields of a webhook: its email address, target URL, secret and headers.

Pure functions: the webhooks service calls them and turns ValueError into a 422.
Private-address (SSRF) checks on the target live in ``conduit.net.addresses``,
because they need DNS at delivery time, not just at save time.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import idna

from conduit.mail.addresses import CATCH_ALL
from conduit.net.addresses import parse_host_ip
from conduit.net.domain_names import normalize_domain_name

MAX_LOCAL_PART = 64
MAX_URL_LENGTH = 2048
MAX_HEADERS = 20
MAX_HEADER_NAME = 64
MAX_HEADER_VALUE = 1024
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret

# RFC 5321 atext without "+" (plus-tags route to the base address) and "*" (catch-all marker).
_ATOM = r"[a-z0-9!#$%&'/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")
_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))  # keep printable ASCII, escape the rest

# Set by the HTTP client or the signer; a user value would break framing or signatures.
FORBIDDEN_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
        "content-type",
        "content-encoding",
    }
)


@dataclass(frozen=True)
class WebhookAddress:
    """A webhook's inbound address; ``local`` is lower-cased and is ``*`` for a catch-all."""

    local: str
    domain: str
    is_catch_all: bool

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"


def parse_webhook_address(address: str) -> WebhookAddress:
    """Parse ``local@domain`` (``*@domain`` = every address of the domain without its own webhook).

    The local part is a lower-cased RFC 5321 dot-atom of at most 64 ASCII characters.
    A ``+`` is refused because mail to ``name+tag@`` is delivered to ``name@``: a webhook
    on ``name+tag@`` would never receive anything.
    """
    if not isinstance(address, str):
        raise ValueError("the address must be a string")
    text = address.strip()
    local, at, domain = text.rpartition("@")
    if not at or not local:
        raise ValueError(f"address '{text}' must look like name@example.com")
    domain = normalize_domain_name(domain)
    local = local.lower()
    if local == CATCH_ALL:
        return WebhookAddress(local=CATCH_ALL, domain=domain, is_catch_all=True)
    if len(local) > MAX_LOCAL_PART:
        raise ValueError(f"address '{text}': the part before @ is longer than {MAX_LOCAL_PART} characters")
    if "+" in local:
        raise ValueError(
            f"address '{text}': '+' is not allowed; mail to name+tag@ is delivered to the webhook of name@"
        )
    if "*" in local:
        raise ValueError(f"address '{text}': '*' is only allowed alone, as the catch-all address *@domain")
    if not _DOT_ATOM.fullmatch(local):
        raise ValueError(
            f"address '{text}': the part before @ may contain letters, digits and !#$%&'/=?^_`{{|}}~- "
            f"separated by single dots"
        )
    return WebhookAddress(local=local, domain=domain, is_catch_all=False)


def validate_target_url(url: str) -> str:
    """Check a webhook target and return it normalised, or raise ValueError.

    Absolute http(s) with a host; user:password@ is refused (it would end up in logs,
    and custom headers carry credentials); the host is lower-cased and IDNA-encoded,
    an IP literal in any notation is rewritten to its standard form (so the SSRF check
    and the HTTP client agree on it), a default port is dropped, the fragment (never sent)
    is dropped and non-ASCII in path and query is percent-encoded.
    """
    if not isinstance(url, str):
        raise ValueError("target_url must be a string")
    text = url.strip()
    if not text:
        raise ValueError("target_url is empty")
    if len(text) > MAX_URL_LENGTH:
        raise ValueError(f"target_url is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise ValueError("target_url must not contain spaces or control characters")
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise ValueError(f"target_url '{text}' is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"target_url '{text}' must start with http:// or https://")
    if not parts.netloc:
        raise ValueError(f"target_url '{text}' has no host")
    if "@" in parts.netloc:
        raise ValueError(f"target_url '{text}' must not contain user:password@; send credentials in a custom header")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"target_url '{text}' has an invalid port (1-65535)") from None
    if port == 0:
        raise ValueError(f"target_url '{text}' has an invalid port (1-65535)")
    host = _normalise_url_host(parts.hostname or "", text)
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        host = f"{host}:{port}"
    path = quote(parts.path, safe=_URL_SAFE) or "/"
    query = quote(parts.query, safe=_URL_SAFE)
    return urlunsplit((scheme, host, path, query, ""))


def _normalise_url_host(hostname: str, url: str) -> str:
    if not hostname:
        raise ValueError(f"target_url '{url}' has no host")
    ip = parse_host_ip(hostname)
    if ip is not None:
        return f"[{ip}]" if ip.version == 6 else str(ip)
    ascii_host = hostname.rstrip(".").lower()
    if not ascii_host.isascii():
        try:
            ascii_host = idna.encode(ascii_host, uts46=True, transitional=False).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"target_url '{url}' has an invalid host name: {exc}") from None
    labels = ascii_host.split(".")
    # Single-label hosts (a container name) and underscores are legitimate in self-hosted setups.
    if len(ascii_host) > 253 or not all(len(label) <= 63 and _HOST_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"target_url '{url}' has an invalid host name")
    return ascii_host


def generate_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def validate_secret(secret: str) -> str:
    """Accept a user-chosen signing secret: 24-256 printable ASCII characters, no spaces.

    A secret starting with ``whsec_`` must be valid base64 after the prefix, since
    Standard Webhooks libraries base64-decode it to get the HMAC key.
    """
    if not isinstance(secret, str):
        raise ValueError("the secret must be a string")
    if not 24 <= len(secret) <= 256:
        raise ValueError("the secret must be 24 to 256 characters long")
    if not all(0x21 <= ord(ch) <= 0x7E for ch in secret):
        raise ValueError("the secret may only contain printable ASCII characters without spaces")
    if secret.startswith(SECRET_PREFIX):
        body = secret[len(SECRET_PREFIX) :]
        try:
            key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        except binascii.Error:
            key = b""
        if len(key) < 16:
            raise ValueError("a secret starting with whsec_ must be base64 of at least 16 bytes")
    return secret


def validate_custom_headers(headers: dict[str, str]) -> dict[str, str]:
    """Check the extra HTTP headers sent with each delivery; returns them with values trimmed.

    Refused: headers the HTTP client owns (Host, Content-Length, hop-by-hop ones),
    Content-Type and Content-Encoding (the payload renderer sets them), and
    ``webhook-*`` (the Standard Webhooks signature headers). Names are unique
    case-insensitively; values may not contain control characters (header injection).
    """
    if not isinstance(headers, dict):
        raise ValueError("custom_headers must be an object of header names to values")
    if len(headers) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} custom headers are allowed")
    result: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name) or len(name) > MAX_HEADER_NAME:
            raise ValueError(
                f"custom header name '{name}' is invalid: "
                f"use letters, digits and -, at most {MAX_HEADER_NAME} characters"
            )
        lowered = name.lower()
        if lowered in FORBIDDEN_HEADERS or lowered.startswith("webhook-"):
            raise ValueError(f"custom header '{name}' is set by Conduit and cannot be overridden")
        if lowered in seen:
            raise ValueError(f"custom header '{name}' is given twice")
        seen.add(lowered)
        if not isinstance(value, str):
            raise ValueError(f"custom header '{name}' must have a string value")
        if any((ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F for ch in value):
            raise ValueError(f"custom header '{name}' must not contain control characters such as CR, LF or NUL")
        if len(value) > MAX_HEADER_VALUE:
            raise ValueError(f"custom header '{name}' is longer than {MAX_HEADER_VALUE} characters")
        result[name] = value.strip(" \t")
    return result
