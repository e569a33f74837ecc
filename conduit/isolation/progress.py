"""Which item a renderer process is working on, and since when: a few bytes of shared memory.

The child writes it at the start of each item and of each stage (no system call); the
parent reads it only when a budget may have run out or the child died. So answers can
travel in batches (one write per batch, one wake-up of the parent) and still every
failure is pinned on the item, and the stage, that was running. What the child writes
is untrusted: the parent bounds it (conduit/isolation/pool.py).
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import NamedTuple

_LAYOUT = struct.Struct("<qqd")  # item id, stage, time.monotonic() at the item's start
STAGES = ("", "parse", "template", "compile")  # by their numbers in the layout; 0: not started


class Position(NamedTuple):
    item_id: int
    stage: str
    started: float


class Progress:
    """The shared page, as one side maps it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._map = mmap.mmap(fd, mmap.PAGESIZE)

    @classmethod
    def create(cls) -> Progress:
        """A new page, for a child about to be started (given ``fd`` with ``pass_fds``)."""
        fd = os.memfd_create("conduit-render-progress")
        os.ftruncate(fd, mmap.PAGESIZE)
        return cls(fd)

    def start(self, item_id: int, stage: str, started: float) -> None:
        _LAYOUT.pack_into(self._map, 0, item_id, STAGES.index(stage), started)

    def enter(self, item_id: int, stage: str) -> None:
        """The running item moves on to ``stage``."""
        _, _, started = _LAYOUT.unpack_from(self._map, 0)
        _LAYOUT.pack_into(self._map, 0, item_id, STAGES.index(stage), started)

    def read(self) -> Position:
        item_id, stage, started = _LAYOUT.unpack_from(self._map, 0)
        return Position(item_id, STAGES[stage] if 0 <= stage < len(STAGES) else "", started)

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)
