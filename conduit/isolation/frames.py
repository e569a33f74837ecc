"""The pipe protocol between Conduit and its renderer processes: length-prefixed frames.

A frame is two big-endian 32-bit lengths, a JSON header (a dict) and raw bytes (the message
going to the child, the rendered body coming back). JSON, not pickle, in both directions: a
child runs attacker-controlled parsing and account-written templates, so what it sends back
is data the parent checks, never something the parent would execute.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from typing import Any, BinaryIO

import orjson

_LENGTHS = struct.Struct(">II")
MAX_HEADER_BYTES = 1024 * 1024


class FrameError(Exception):
    """The other side broke the protocol (oversized or malformed frame)."""


def encode(header: Mapping[str, Any], body: bytes = b"") -> bytes:
    data = orjson.dumps(header)
    return b"".join((_LENGTHS.pack(len(data), len(body)), data, body))


class FrameDecoder:
    """Frames out of a byte stream that arrives in arbitrary pieces (the parent's side)."""

    def __init__(self, max_body_bytes: int) -> None:
        self._buffer = bytearray()
        self._max_body = max_body_bytes

    def feed(self, data: bytes) -> list[tuple[dict[str, Any], bytes]]:
        """The frames completed by ``data``; FrameError if the stream breaks the protocol."""
        buffer = self._buffer
        buffer += data
        frames = []
        at = 0
        while len(buffer) - at >= _LENGTHS.size:
            header_size, body_size = _LENGTHS.unpack_from(buffer, at)
            if header_size > MAX_HEADER_BYTES or body_size > self._max_body:
                raise FrameError(f"a frame of {header_size} + {body_size} bytes is larger than allowed")
            start = at + _LENGTHS.size
            end = start + header_size + body_size
            if len(buffer) < end:
                break
            try:
                header = orjson.loads(bytes(buffer[start:start + header_size]))
            except orjson.JSONDecodeError as exc:
                raise FrameError(f"a frame's header is not JSON: {exc}") from None
            if not isinstance(header, dict):
                raise FrameError("a frame's header is not a JSON object")
            frames.append((header, bytes(buffer[start + header_size:end])))
            at = end
        if at:
            del buffer[:at]
        return frames


def read_frame(stream: BinaryIO) -> tuple[dict[str, Any], bytes] | None:
    """The next frame from a blocking stream (the child's side); None at the end of the stream."""
    lengths = stream.read(_LENGTHS.size)
    if not lengths:
        return None
    if len(lengths) < _LENGTHS.size:
        raise FrameError("the stream ended inside a frame")
    header_size, body_size = _LENGTHS.unpack(lengths)
    if header_size > MAX_HEADER_BYTES:
        raise FrameError(f"a frame header of {header_size} bytes is larger than allowed")
    data = stream.read(header_size)
    body = stream.read(body_size) if body_size else b""
    if len(data) < header_size or len(body) < body_size:
        raise FrameError("the stream ended inside a frame")
    header = orjson.loads(data)
    if not isinstance(header, dict):
        raise FrameError("a frame's header is not a JSON object")
    return header, body


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a blocking file descriptor."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
