"""The wake pipes of `conduit serve` (conduit/wake.py): every worker process has its own, and one
accepted message wakes every worker, not only the first to read (with one shared pipe the first
reader drained it and a second worker process slept until its next poll)."""

from __future__ import annotations

import asyncio
import os

from conduit.wake import WakePipes, listen_for_wakes


async def test_one_notify_wakes_every_worker():
    ends = [os.pipe() for _ in range(3)]
    pipes = WakePipes([write for _, write in ends])
    woken = [asyncio.Event() for _ in ends]
    for (read, _), event in zip(ends, woken, strict=True):
        listen_for_wakes(read, event.set)
    try:
        pipes.notify()
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in woken)), timeout=5)
    finally:
        loop = asyncio.get_running_loop()
        for read, _ in ends:
            loop.remove_reader(read)
            os.close(read)
        pipes.close()


async def test_a_full_pipe_or_a_gone_worker_does_not_fail_the_notify():
    (read_full, write_full), (read_gone, write_gone) = os.pipe(), os.pipe()
    os.close(read_gone)  # that worker exited: writing gets EPIPE
    pipes = WakePipes([write_full, write_gone])
    try:
        for _ in range(70000):  # more than a pipe's 64 KiB
            pipes.notify()
        assert len(os.read(read_full, 1 << 20)) >= 65536
    finally:
        os.close(read_full)
        pipes.close()
