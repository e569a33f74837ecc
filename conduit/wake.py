"""The wake pipes between `conduit serve` and its worker processes, one per worker: after each
commit the SMTP server writes a byte to each; a worker reading one looks at the queue at once
instead of at its next poll. (With one pipe for all, the first worker to read it drained it and
the others slept until their next poll: a second worker process took almost no mail.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable


class WakePipes:
    """The write ends, one per worker: one byte each per accepted message; a full pipe already
    means "wake up"."""

    def __init__(self, fds: list[int]) -> None:
        for fd in fds:
            os.set_blocking(fd, False)
        self.fds = fds

    def notify(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(BlockingIOError, BrokenPipeError):
                os.write(fd, b"\0")

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


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
