"""Summarise a py-spy ``--format raw --threads`` profile (collapsed stacks) as plain-text tables.

Each input line is ``thread (TID): NAME;frame;frame;... COUNT`` with frames ``func (path:line)``,
outermost first. Reported, as shares of all samples that were on a CPU (py-spy leaves idle
threads out unless asked):

- by thread (the event loop's ``MainThread`` vs. aiosqlite's and ``asyncio.to_thread``'s threads);
- by role, inclusive: SMTP sessions (conduit/smtp), the delivery worker, the API, other;
- by package of the innermost frame (self time): conduit, sqlalchemy, asyncio, logging, ...;
- the functions with the most self time and the most inclusive time.

Usage: ``python bench/profile_summary.py PROFILE.collapsed``.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

_LINE = re.compile(r":\d+\)$")
_PATH = re.compile(r"\(([^():]+)(?::\d+)?\)$")
ROLES = (  # first match wins, tested against the whole stack
    ("SMTP session (conduit/smtp: protocol and handler)", ("conduit/smtp/",)),
    ("delivery worker", ("Worker.deliver", "Worker.run", "conduit/worker/")),
    ("API (uvicorn/FastAPI)", ("uvicorn/", "fastapi/", "starlette/")),
)


def _frame(frame: str) -> str:
    return _LINE.sub(")", frame)


def _package(frame: str) -> str:
    match = _PATH.search(frame)
    if not match:
        return frame
    path = match.group(1)
    if path.startswith("<"):
        return path
    top = path.split("/", 1)[0]
    return top.removesuffix(".py")


def _role(stack: str, thread: str) -> str:
    for name, needles in ROLES:
        if any(n in stack for n in needles):
            return name
    if "MainThread" not in thread:
        return "worker threads, no Python caller visible (aiosqlite, to_thread)"
    return "event loop, other (callbacks, SQLAlchemy greenlet frames without caller, ...)"


def summarise(text: str, top: int = 25) -> str:
    total = 0
    threads: Counter[str] = Counter()
    roles: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        head, _, rest = stack.partition(";")
        thread = head.split(": ", 1)[-1] if ": " in head else head
        thread = re.sub(r"-\d+", "-N", re.sub(r"\(.*\)", "", thread)).strip() or "thread"
        frames = [f for f in rest.split(";") if f]
        total += count
        threads[thread] += count
        roles[_role(rest, head)] += count
        if frames:
            packages[_package(frames[-1])] += count
            self_time[_frame(frames[-1])] += count
        for frame in {_frame(f) for f in frames}:
            inclusive[frame] += count
    if not total:
        return "profile: no samples\n"

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f} %"

    out = [f"py-spy samples on CPU: {total}", "", "By thread:"]
    out += [f"  {pct(n)}  {name}" for name, n in threads.most_common()]
    out += ["", "By role (inclusive; a stack counts for the first role found in it):"]
    out += [f"  {pct(n)}  {name}" for name, n in roles.most_common()]
    out += ["", "By package of the innermost frame (self time):"]
    out += [f"  {pct(n)}  {name}" for name, n in packages.most_common(top)]
    out += ["", f"Top {top} functions by self time:"]
    out += [f"  {pct(n)}  {name}" for name, n in self_time.most_common(top)]
    skip = ("<frozen runpy>", "click/", "conduit/cli.py", "conduit/__main__.py", "asyncio/runners.py",
            "asyncio/base_events.py", "asyncio/events.py", "uvloop/")
    out += ["", f"Top {top} functions by inclusive time (the process's entry points left out):"]
    out += [f"  {pct(n)}  {name}" for name, n in
            [(name, n) for name, n in inclusive.most_common() if not any(s in name for s in skip)][:top]]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        sys.stdout.write(summarise(f.read()))
