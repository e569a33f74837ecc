"""The one clock and the one ID generator, so tests and code agree on time and IDs."""

from __future__ import annotations

import base64
import re
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


_ID_BODY = re.compile(r"[0-9a-v]{26}")


def is_id(value: str, prefix: str) -> bool:
    """Whether ``value`` has the shape of ``new_id(prefix)``; anything else (a NUL, say, which
    PostgreSQL refuses in a query) is a 404 without asking the database."""
    head, sep, body = value.partition("_")
    return head == prefix and sep == "_" and _ID_BODY.fullmatch(body) is not None
