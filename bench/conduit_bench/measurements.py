"""What the benchmark reads from ``/proc`` (CPU, memory, the machine's other load) and the
statistics it reports."""

from __future__ import annotations

import base64
import math
import os
import threading
import time
from pathlib import Path

from conduit_bench.settings import CLK_TCK


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (``conduit serve`` runs its delivery workers as children)."""
    tree, index = [pid], 0
    while index < len(tree):
        try:
            children = Path(f"/proc/{tree[index]}/task/{tree[index]}/children").read_text().split()
        except OSError:
            children = []
        tree += [int(child) for child in children]
        index += 1
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """CPU of ``pid`` and its live descendants (children still running when measured)."""
    total = 0.0
    for member in process_tree(pid):
        try:
            total += proc_cpu_seconds(member)
        except OSError:
            pass
    return total


def tree_status_kib(pid: int, key: str) -> int:
    total = 0
    for member in process_tree(pid):
        try:
            total += proc_status_kib(member, key)
        except OSError:
            pass
    return total


class RssSampler(threading.Thread):
    """The highest VmRSS of a process and its children together, sampled every 50 ms while
    running (VmHWM is no use here:
    the process's lifetime peak is reached at start-up, hashing the benchmark account's password
    with Argon2, not while handling mail)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kib, self._stop_event = pid, 0, threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.peak_kib = max(self.peak_kib, tree_status_kib(self.pid, "VmRSS"))
            except OSError:
                return
            self._stop_event.wait(0.05)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.peak_kib / 1024


def machine_busy_seconds() -> float:
    """CPU seconds spent by the whole machine (all cores, not idle nor waiting for I/O)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLK_TCK


def wait_until_quiet(max_wait: float, threshold: float = 0.15) -> float:
    """Wait (up to ``max_wait`` seconds) until processes outside the benchmark use less than
    ``threshold`` cores over 2 s: a shared machine's other jobs would lower the numbers. Returns the
    load last seen, in cores."""
    deadline = time.monotonic() + max_wait
    waited = False
    while True:
        before, wall = machine_busy_seconds(), time.monotonic()
        time.sleep(2.0)
        load = (machine_busy_seconds() - before) / (time.monotonic() - wall)
        if load < threshold or time.monotonic() >= deadline:
            if waited:
                print(f"bench: other processes use {load:.2f} cores; going on", flush=True)
            return load
        if not waited:
            print(f"bench: other processes use {load:.2f} cores; waiting up to {max_wait:.0f} s for quiet",
                  flush=True)
            waited = True


def postgres_cpu() -> dict[int, float]:
    """CPU seconds of every local ``postgres`` process, by pid (a local PostgreSQL is part of the
    system under test, not "other load")."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    found[int(entry.name)] = proc_cpu_seconds(int(entry.name))
            except OSError:
                continue
    return found


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def id_time(msg_id: str) -> float | None:
    """The storing time (seconds) in a Conduit message id: 48-bit milliseconds, base32hex."""
    body = msg_id.partition("_")[2].upper()
    if len(body) != 26:
        return None
    raw = base64.b32hexdecode(body + "=" * 6)
    return int.from_bytes(raw[:6], "big") / 1000


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(p: float) -> float:  # nearest rank
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "max": ordered[-1]}


def proc_status_kib_file(path: str, key: str) -> int:
    for line in Path(path).read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0
