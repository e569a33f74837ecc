"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}`` and the signature
``v1,<base64 HMAC-SHA256>``. The HMAC key is derived from the webhook's secret exactly
as the reference libraries do (``standardwebhooks.Webhook(secret)`` in Python, the JS
and Go ones alike): the ``whsec_`` prefix is dropped and the rest base64-decoded,
leniently. That applies to a secret *without* the prefix too, so a receiver pasting
its secret into any Standard Webhooks library verifies our signatures.

A secret that cannot be base64-decoded at all (the libraries refuse it) falls back
to its UTF-8 bytes: a receiver can still check it with a plain HMAC.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SIGNATURE_VERSION = "v1"


@functools.lru_cache(maxsize=1024)
def signing_key(secret: str) -> bytes:
    """The HMAC key for ``secret`` (see the module docstring)."""
    body = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        # Same call as standardwebhooks: non-alphabet characters are skipped, padding added.
        key = base64.b64decode(body + "==")
    except binascii.Error:
        key = b""
    return key or secret.encode("utf-8")


def sign(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "msg_id.timestamp.body">``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.digest(signing_key(secret), signed, "sha256")
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def sign_headers(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one delivery attempt.

    ``msg_id`` stays the same across retries of one delivery (receivers deduplicate on
    it); ``timestamp`` is the attempt's time in Unix seconds (receivers refuse stale ones).
    """
    if not msg_id:
        raise ValueError("msg_id must not be empty")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": sign(secret, msg_id=msg_id, timestamp=int(timestamp), body=body),
    }
