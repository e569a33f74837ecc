"""The one clock and the one ID generator, so tests and code agree on time and IDs."""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


# Every pair of base32hex digits (10 bits), lower case: an ID's 26 digits are 13 lookups. The
# stdlib's b32hexencode is pure Python in 3.11, and every message takes three IDs.
_DIGIT_PAIRS = [a + b for a in "0123456789abcdefghijklmnopqrstuv" for b in "0123456789abcdefghijklmnopqrstuv"]


def new_id(prefix: str) -> str:
    """An opaque, unguessable, time-ordered ID: ``<prefix>_`` + 48-bit ms time + 80 random bits, base32hex.

    Time-ordered so that "newest first" can sort by ID when timestamps tie.
    """
    value = (int(time.time() * 1000) & (2**48 - 1)) << 80 | secrets.randbits(80)
    return prefix + "_" + _base32hex(value)


def _base32hex(value: int) -> str:
    """128 bits as ``base64.b32hexencode`` writes their 16 bytes, lower case, without padding."""
    value <<= 2  # 26 digits hold 130 bits: base32 pads the last digit with zero bits
    return "".join([_DIGIT_PAIRS[(value >> shift) & 1023] for shift in range(120, -1, -10)])


_ID_BODY = re.compile(r"[0-9a-v]{26}")


def is_id(value: str, prefix: str) -> bool:
    """Whether ``value`` has the shape of ``new_id(prefix)``; anything else (a NUL, say, which
    PostgreSQL refuses in a query) is a 404 without asking the database."""
    head, sep, body = value.partition("_")
    return head == prefix and sep == "_" and _ID_BODY.fullmatch(body) is not None
