"""Signed links to a kept message and its attachments, for payloads whose attachments are too
large to send inline (CONDUIT_MAX_INLINE_ATTACHMENT_BYTES): whoever holds the payload may fetch
them without a token, until the message's retention ends.

A link carries its expiry and an HMAC-SHA256 of (message id, expiry) under a key derived from
CONDUIT_SECRET_KEY, so one signature covers the raw message and each of its attachments. Links
made under a key now listed in CONDUIT_PREVIOUS_SECRET_KEYS stay valid.
"""

from __future__ import annotations

import base64
import functools
import hmac
from datetime import datetime, timedelta

from conduit.clock import now
from conduit.config import Settings
from conduit.crypto import derive_key
from conduit.errors import Forbidden, Gone
from conduit.mail.parse import PayloadLinks

PURPOSE = "message-links"
LINKS_PATH = "/api/v1/links/messages"


@functools.lru_cache(maxsize=8)
def _key(secret_key: str) -> bytes:
    return derive_key(secret_key, PURPOSE)


def _signature(secret_key: str, message_id: str, expires: int) -> str:
    digest = hmac.digest(_key(secret_key), f"{message_id}.{expires}".encode(), "sha256")
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(settings: Settings, message_id: str, expires: int) -> str:
    return _signature(settings.secret_key, message_id, expires)


def links_for(settings: Settings, message_id: str, received_at: datetime) -> PayloadLinks | None:
    """The payload's links to a message kept for CONDUIT_MESSAGE_RETENTION_DAYS; None when
    messages are not kept (nothing would be there to fetch)."""
    if settings.message_retention_days <= 0:
        return None
    expires = int((received_at + timedelta(days=settings.message_retention_days)).timestamp())
    query = f"expires={expires}&signature={sign(settings, message_id, expires)}"
    base = f"{settings.public_base_url}{LINKS_PATH}/{message_id}"
    return PayloadLinks(raw_url=f"{base}/raw?{query}", attachment_url=f"{base}/attachments/{{index}}?{query}")


def check(settings: Settings, message_id: str, *, expires: str, signature: str) -> None:
    """Raise Forbidden for a link Conduit did not sign as it stands (any part changed or
    missing), Gone for one whose time is over."""
    keys = (settings.secret_key, *settings.previous_secret_key_list)
    if not (expires.isascii() and expires.isdigit() and len(expires) <= 12 and signature.isascii()) or not any(
            hmac.compare_digest(_signature(key, message_id, int(expires)), signature) for key in keys):
        raise Forbidden("this link is not one Conduit signed (was it changed?)", code="invalid_signature")
    if now().timestamp() >= int(expires):
        raise Gone("this link has expired: the message is no longer kept", code="link_expired")
