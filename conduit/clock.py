"""The one clock and the one ID generator, so tests and code agree on time and IDs."""

from __future__ import annotations

import base64
import secrets
import time
from datetime import UTC, datetime


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """An opaque, unguessable, time-ordered ID: ``<prefix>_`` + 48-bit ms time + 80 random bits, base32hex.

    Time-ordered so that "newest first" can sort by ID when timestamps tie.
    """
    raw = (int(time.time() * 1000) & (2**48 - 1)).to_bytes(6, "big") + secrets.token_bytes(10)
    return f"{prefix}_{base64.b32hexencode(raw).decode().rstrip('=').lower()}"
