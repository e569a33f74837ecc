"""What the instruction counts (bench/instructions.py, bench/checks_instructions.py) ask of
Valgrind's callgrind: zeroing and dumping counters, and reading a dump's total."""

from __future__ import annotations

import subprocess


def control(action: str, pid: int | None = None) -> None:
    """``callgrind_control --zero`` or ``--dump``, for one process or (no ``pid``) every one
    running under callgrind; it returns once they have acted."""
    subprocess.run(["callgrind_control", action, *([str(pid)] if pid is not None else [])],
                   check=True, capture_output=True)


def total_instructions(dump: str) -> int:
    """The instructions counted in a dump file (its ``summary:`` or ``totals:`` line; 0 without one)."""
    with open(dump) as lines:
        return next((int(line.split()[1]) for line in lines if line.startswith(("summary:", "totals:"))), 0)
