"""The renderer processes' pipe protocol: frames survive any split of the stream, and a stream
that breaks the protocol (oversized, not JSON, not an object) is refused, never guessed at."""

from __future__ import annotations

import io
import struct

import pytest

from conduit.isolation.frames import FrameDecoder, FrameError, encode, read_frame

FRAMES = [({"id": 1, "ok": True}, b"body \x00\xff bytes"), ({"ready": True}, b""), ({"id": 2, "e": "é"}, b"x" * 70000)]


def test_frames_come_out_whole_however_the_stream_is_cut():
    stream = b"".join(encode(h, b) for h, b in FRAMES)
    for size in (1, 7, 8, 9, 4096, len(stream)):
        decoder = FrameDecoder(max_body_bytes=1 << 20)
        got = []
        for at in range(0, len(stream), size):
            got.extend(decoder.feed(stream[at:at + size]))
        assert got == FRAMES, size


def test_the_blocking_reader_reads_the_same_frames():
    stream = io.BufferedReader(io.BytesIO(b"".join(encode(h, b) for h, b in FRAMES)))
    assert [read_frame(stream) for _ in FRAMES] == FRAMES
    assert read_frame(stream) is None


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (struct.pack(">II", 2, 1 << 21), "larger than allowed"),  # a body past the limit is refused at once
        (struct.pack(">II", 1 << 30, 0), "larger than allowed"),
        (struct.pack(">II", 5, 0) + b"{nope", "not JSON"),
        (struct.pack(">II", 2, 0) + b"[]", "not a JSON object"),
    ],
)
def test_a_stream_that_breaks_the_protocol_is_refused(data, error):
    with pytest.raises(FrameError, match=error):
        FrameDecoder(max_body_bytes=1 << 20).feed(data)


def test_a_stream_that_ends_inside_a_frame_is_an_error_for_the_reader():
    with pytest.raises(FrameError, match="ended inside a frame"):
        read_frame(io.BufferedReader(io.BytesIO(encode({"id": 1}, b"abc")[:-1])))
