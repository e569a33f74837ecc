"""The wake pipe between `conduit serve` and its worker processes: after each commit the SMTP
server writes a byte; a worker reading it looks at the queue at once instead of at its next poll."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable


class WakePipe:
    """The write end: one byte per accepted message; a full pipe already means "wake up"."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd

    def notify(self) -> None:
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self.fd, b"\0")

    def close(self) -> None:
        os.close(self.fd)


def listen_for_wakes(fd: int, wake: Callable[[], None]) -> None:
    """The read end, in a worker's event loop: each readable moment drains the pipe, wakes once."""
    os.set_blocking(fd, False)

    def on_readable() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not data:  # the serve process is gone: stop watching; the parent-death signal follows
            asyncio.get_running_loop().remove_reader(fd)
            return
        wake()

    asyncio.get_running_loop().add_reader(fd, on_readable)
