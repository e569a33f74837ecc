"""The message the simulate endpoint delivers: a small valid RFC 5322 mail built from a
few user-given fields, so a simulated delivery goes through the real parser.

Why the CR/LF check: ``from`` and ``subject`` come from an API caller; a line break
would let them write extra headers (or a body) into the message.
"""

from __future__ import annotations

import secrets
from email import policy as email_policy
from email.errors import NonASCIILocalPartDefect
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from conduit import clock

DEFAULT_FROM = "simulator@conduit.invalid"
DEFAULT_SUBJECT = "Conduit test message"
DEFAULT_TEXT = (
    "This is a test message from Conduit's webhook simulator.\n"
    "If your endpoint received it, your webhook works.\n"
)
MESSAGE_ID_DOMAIN = "conduit.invalid"  # RFC 2606: never a real domain
# CRLF line ends, ASCII headers (RFC 2047 words); RFC 6532 UTF-8 headers only for non-ASCII addresses.
_POLICY = email_policy.SMTP
_POLICY_UTF8 = email_policy.SMTPUTF8


def build_synthetic_message(*, from_addr: str | None, to_addr: str, subject: str | None, text: str | None) -> bytes:
    """RFC 5322 bytes with Date, Message-ID, MIME-Version and a UTF-8 text/plain body.

    ``None`` (or a blank ``from_addr``) means the default. ``from_addr`` may carry a
    display name (``Alice <alice@example.com>``) but must be one address.
    Raises ValueError for line breaks in a header field or an unusable address.
    """
    sender = from_addr.strip() if from_addr and from_addr.strip() else DEFAULT_FROM
    subject = DEFAULT_SUBJECT if subject is None else subject
    text = DEFAULT_TEXT if text is None else text
    for field, value in (("from", sender), ("to", to_addr), ("subject", subject)):
        if any(ch in value for ch in "\r\n\0"):
            raise ValueError(f"{field} must not contain line breaks or NUL characters")
    addresses = _single_address("from", sender), _single_address("to", to_addr)
    ascii_only = all(a.addr_spec.isascii() for a in addresses)
    message = EmailMessage(policy=_POLICY if ascii_only else _POLICY_UTF8)
    message["From"], message["To"] = addresses
    message["Subject"] = subject
    message["Date"] = format_datetime(clock.now())
    message["Message-ID"] = f"<{secrets.token_hex(16)}@{MESSAGE_ID_DOMAIN}>"
    message["MIME-Version"] = "1.0"
    message.set_content(text, charset="utf-8")
    return message.as_bytes()


def _single_address(field: str, value: str) -> Address:
    """Parse ``value`` into exactly one address with a local part and a domain."""
    invalid = ValueError(f"{field} '{value}' is not a single email address such as name@example.com")
    try:
        header = _POLICY_UTF8.header_factory(field, value)
    except Exception:  # noqa: BLE001 - the stdlib's header parser has IndexError bugs on input like "a@"
        raise invalid from None
    addresses: tuple[Address, ...] = getattr(header, "addresses", ())
    defects = [d for d in header.defects if not isinstance(d, NonASCIILocalPartDefect)]  # fine under SMTPUTF8
    if defects or len(addresses) != 1 or not addresses[0].username or not addresses[0].domain:
        raise invalid
    return addresses[0]
