"""Bytes in, SMTP command lines and messages out, and reading paused while input piles up.

Nothing here knows a command: the protocol (conduit/smtp/protocol.py) asks for the next line
or, after DATA, the next message, as bytes arrive in whatever pieces TCP made of them.
"""

from __future__ import annotations

import asyncio
from typing import Final

LINE_LIMIT: Final = 1001  # longer lines are dropped unread (and answered "too long")
END_OF_DATA: Final = b"\r\n.\r\n"
PAUSE_AT: Final = 256 * 1024  # buffered input that stops reading while a step is in progress


class Dropped:
    """What stands for input that was dropped unread: a line over the limit, a message over
    the size limit."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


TOO_LONG: Final = Dropped("TOO_LONG")
TOO_BIG: Final = Dropped("TOO_BIG")


class InputBuffer:
    """What the client sent and nobody has read yet."""

    __slots__ = ("_dropping_line", "_scan", "_too_big", "data", "in_data")

    def __init__(self) -> None:
        self.data = bytearray()
        self.in_data = False  # between DATA's 354 and the end of data
        self._scan = 0  # where to look for the end of data next
        self._too_big = False
        self._dropping_line = False  # an overlong line is being read and dropped

    def __len__(self) -> int:
        return len(self.data)

    def feed(self, data: bytes) -> None:
        self.data += data

    def clear(self) -> None:
        self.data.clear()

    def take(self, count: int) -> None:
        """Drop ``count`` bytes from the front (a PROXY header once read)."""
        del self.data[:count]

    def next_line(self) -> bytes | Dropped | None:
        """The next command line without its line break (a bare LF ends it too, as in Postfix),
        TOO_LONG for one over the limit, None until a line is complete."""
        buffer = self.data
        end = buffer.find(b"\n")
        if end < 0:
            if len(buffer) > LINE_LIMIT:
                self._dropping_line = True
                buffer.clear()
            return None
        if self._dropping_line or end > LINE_LIMIT:
            self._dropping_line = False
            del buffer[:end + 1]
            return TOO_LONG
        line = bytes(buffer[:end + 1]).rstrip(b"\r\n")
        del buffer[:end + 1]
        return line

    def start_message(self) -> None:
        """After DATA's 354: lines are message now. The CRLF that ended DATA is put back, so
        that an empty message's end of data (".\\r\\n" at once) is found like any other."""
        self.in_data = True
        self._too_big = False
        self._scan = 0
        self.data[:0] = b"\r\n"

    def take_message(self, limit: int) -> bytes | Dropped | None:
        """The message up to <CRLF>.<CRLF> (only that ends it: no bare LF, RFC 5321 4.1.1.4),
        dot-unstuffed; TOO_BIG for one over ``limit`` bytes, which is still read to its end
        and dropped, so that the 552 comes after the end of data (RFC 5321 4.2.5); None until
        the end of data has arrived."""
        buffer = self.data
        end = buffer.find(END_OF_DATA, self._scan)
        if end < 0:
            if self._too_big or len(buffer) > limit + len(END_OF_DATA):
                self._too_big = True
                del buffer[:-4]  # kept: the end of data may straddle the next chunk
            self._scan = max(0, len(buffer) - 4)
            return None
        self.in_data = False
        # buffer: the CRLF put first by start_message, the message (its last CRLF included), ".\r\n".
        if self._too_big or end > limit:
            del buffer[:end + 5]
            return TOO_BIG
        message = buffer[:end + 2]
        del buffer[:end + 5]
        if b"\r\n." in message:
            message = message.replace(b"\r\n.", b"\r\n")  # a line's leading dot was doubled
        with memoryview(message) as view:
            return bytes(view[2:])


class ReadPause:
    """Stops reading from the transport while input piles up behind a step in progress (or
    replies the client does not read), and starts again once the protocol can go on."""

    __slots__ = ("paused",)

    def __init__(self) -> None:
        self.paused = False

    def update(self, transport: asyncio.Transport, buffered: int, waiting: bool) -> None:
        if not self.paused and waiting and buffered > PAUSE_AT:
            self.paused = True
            transport.pause_reading()
        elif self.paused and not waiting:
            self.paused = False
            transport.resume_reading()
