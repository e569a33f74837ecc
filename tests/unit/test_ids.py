"""IDs (conduit/clock.py): 26 base32hex digits of a 48-bit millisecond time and 80 random bits,
written exactly as ``base64.b32hexencode`` writes those 16 bytes, so they sort by time."""

from __future__ import annotations

import base64
import random
import time

from conduit.clock import _base32hex, is_id, new_id


def _stdlib(value: int) -> str:
    return base64.b32hexencode(value.to_bytes(16, "big")).decode().rstrip("=").lower()


def test_ids_are_written_as_the_stdlib_writes_base32hex():
    rng = random.Random(32)
    values = [0, 1, 2**127, 2**128 - 1, *(rng.getrandbits(128) for _ in range(20000))]
    assert all(_base32hex(value) == _stdlib(value) for value in values)


def test_ids_have_their_shape_and_sort_by_time():
    first = new_id("msg")
    time.sleep(0.002)
    second = new_id("msg")
    assert is_id(first, "msg") and is_id(second, "msg")
    assert first < second
    assert len({new_id("job") for _ in range(10000)}) == 10000
