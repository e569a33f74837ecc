"""The pipes between `conduit serve` and its worker processes, two per worker.

Wake pipes, serve to worker: after each commit the SMTP server writes a byte to each; a worker
reading one looks at the queue at once instead of at its next poll. (With one pipe for all, the
first worker to read it drained it and the others slept until their next poll: a second worker
process took almost no mail.) Routes pipes, worker to serve: a worker that changed routing data
(deactivated a webhook) writes a byte, and the SMTP server forgets its cached routes.

Either way a byte only says "something happened"; a full pipe already says it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable


class WakePipes:
    """Write ends: ``notify`` writes one byte to each; a full pipe, or a reader that is gone, is
    no error."""

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
    """A read end, in this event loop: each readable moment drains the pipe and calls ``wake`` once."""
    os.set_blocking(fd, False)

    def on_readable() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not data:  # the other process is gone: stop watching (serve and its workers stop each other)
            asyncio.get_running_loop().remove_reader(fd)
            return
        wake()

    asyncio.get_running_loop().add_reader(fd, on_readable)
