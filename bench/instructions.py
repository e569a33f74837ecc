"""Instructions per message of each Conduit process, counted by Valgrind's callgrind.

Why: on this kind of shared two-core VM a `make bench` rate moves by ±20 % from run to run, so a
change worth a few percent cannot be seen in it. An instruction count does not depend on what
else the host is doing: the same code and load give the same count within about 1 %.

``python bench/instructions.py [MESSAGES]`` (default 800; ``make bench-instructions``) starts
``conduit serve`` (a fresh SQLite file) with every process under callgrind: the server, its
worker and the worker's renderer processes. It sends 300 signed 4 KiB messages as a warm-up
with Postfix's ``smtp-source`` (10 sessions, one connection per message), zeroes the counters,
sends MESSAGES more, waits until the receiver has them all, and prints each process's
instructions per message, with the inbound checks on and then off.

``BENCH_SOURCE=<dir>`` runs the ``conduit`` package found in ``<dir>`` instead of this checkout's
(``git archive <commit> conduit | tar -x -C <dir>``), to compare two commits in one sitting.
Needs ``valgrind`` (Debian's package) and Postfix's ``smtp-source``; takes about five minutes.
Under callgrind everything runs some fifty times slower, so the batches of the group commit
and of the worker are not those of a full-speed run: compare counts with each other, never
with a `make bench` rate.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

from conduit_bench import callgrind, processes
from conduit_bench.load import smtp_source
from conduit_bench.mail_auth import SendingDomain

WARMUP = 300
SESSIONS = 10
# Valgrind reserves address space of its own: the renderer's default limit would stop it.
RENDER_MEMORY_MB = "16000"


def _under_callgrind(start, out_dir: Path):
    """``start`` (processes.CHILDREN.start), with `conduit serve` and every process it starts
    under callgrind."""

    def wrapped(args: list[str], **kwargs) -> subprocess.Popen:
        if args[1:4] == ["-m", "conduit", "serve"]:
            env = dict(kwargs["env"], CONDUIT_RENDER_MEMORY_MB=RENDER_MEMORY_MB)
            if source := os.environ.get("BENCH_SOURCE"):
                env["PYTHONPATH"] = source
            kwargs["env"] = env
            args = ["valgrind", "--tool=callgrind", "--trace-children=yes",
                    f"--callgrind-out-file={out_dir}/%p.out", *args]
        return start(args, **kwargs)

    return wrapped


def _role(pid: str) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    text = b" ".join(argv).decode(errors="replace")
    for role, marker in (("renderer", "isolation.child"), ("worker", " worker"), ("server", " serve")):
        if marker in text:
            return role
    return "other"


def measure(sending: SendingDomain, tmp: Path, *, checks: bool, messages: int) -> dict[str, float]:
    """Instructions per message (millions) by role, the counts of processes of one role added up."""
    out_dir = Path(tempfile.mkdtemp(prefix="callgrind-", dir=tmp))
    receiver = processes.Receiver(tmp)
    start = processes.CHILDREN.start
    processes.CHILDREN.start = _under_callgrind(start, out_dir)
    try:
        conduit = processes.Conduit(None, out_dir, out_dir / "conduit.log", auth_checks=checks,
                                    dns_servers=sending.servers)
    finally:
        processes.CHILDREN.start = start  # only `conduit serve` runs under callgrind
    try:
        address = conduit.add_webhook(receiver.url)
        load = {"size": 4096, "reuse": False, "sessions": SESSIONS, "to": address,
                "message_file": sending.message_file(4096, tmp)}
        smtp_source(conduit.smtp_port, messages=WARMUP, **load)
        receiver.wait_for(WARMUP, 600, conduit.proc)
        receiver.reset()
        callgrind.control("--zero")
        smtp_source(conduit.smtp_port, messages=messages, **load)
        receiver.wait_for(messages, 900, conduit.proc)
        callgrind.control("--dump")
        time.sleep(2)  # the dumps are written by each process in its own time
        per_role: dict[str, float] = {}
        for dump in glob.glob(f"{out_dir}/*.out.*"):
            role = _role(Path(dump).name.split(".")[0])
            per_role[role] = per_role.get(role, 0.0) + callgrind.total_instructions(dump) / messages / 1e6
        return per_role
    finally:
        conduit.stop()
        receiver.stop()
        shutil.rmtree(out_dir, ignore_errors=True)


def main() -> int:
    messages = int(sys.argv[1]) if len(sys.argv) > 1 else 800
    processes.START_SECONDS = 600.0  # imports alone take a minute under callgrind
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench/instructions.py needs {tool} (apt-get install valgrind)")
    source = os.environ.get("BENCH_SOURCE") or str(BENCH.parent)
    sending = SendingDomain()
    sending.start()
    tmp = Path(tempfile.mkdtemp(prefix="conduit-instructions-"))
    try:
        print(f"conduit from {source}: millions of instructions per signed 4 KiB message, {messages} messages")
        for checks in (True, False):
            per_role = measure(sending, tmp, checks=checks, messages=messages)
            roles = ", ".join(f"{role} {per_role.get(role, 0.0):.2f}" for role in ("server", "worker", "renderer"))
            print(f"checks {'on ' if checks else 'off'}: {roles}; total {sum(per_role.values()):.2f}", flush=True)
    finally:
        sending.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
