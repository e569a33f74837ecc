"""Instructions per inbound check (SPF, DKIM, DMARC) with warm caches, counted by callgrind.

Why: `make bench-checks` times the checks, and on a shared two-core VM its figures move by a
third from one run to the next; a change worth a few percent of the checks shows only in a
count. ``python bench/checks_instructions.py`` (``make bench-checks-instructions``) runs
itself under Valgrind's callgrind: on one event loop, Conduit's checks of the bench's signed
4 KiB message (conduit/mail/authentication.py; the sending domain of `make bench` on its
loopback DNS server) first fill the caches, then the counters are zeroed and ``CHECKS``
(1,000) more checks run. It prints the instructions of the event loop's thread per check:
SPF, DKIM and DMARC each alone, and the three in a row, as for a message from one sender
(SPF's and DMARC's results are then kept). The loopback DNS server's thread is not counted.

``BENCH_SOURCE=<dir>`` runs the ``conduit`` package found in ``<dir>`` (``git archive <commit>
conduit | tar -x -C <dir>``). Needs ``valgrind``; takes about two minutes.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [os.environ.get("BENCH_SOURCE") or str(BENCH.parent), str(BENCH), str(BENCH.parent)]

from conduit_bench import callgrind

CHECKS = 1000
PARTS = ("spf", "dkim", "dmarc", "all")


async def _run(part: str) -> None:
    from conduit.mail.authentication import InboundChecks
    from conduit_bench.mail_auth import SENDER_DOMAIN, SendingDomain

    sending = SendingDomain()
    sending.start()
    try:
        checks = InboundChecks([(sending.dns.host, sending.dns.port)], timeout=3.0, cache_size=10_000)
        raw = sending.signed(4096)
        sender = {"ip": "127.0.0.1", "mail_from": f"sender@{SENDER_DOMAIN}", "helo": "client.bench.example"}
        spf = await checks.spf(**sender)
        dkim = await checks.dkim(raw)

        async def one() -> None:
            if part in ("spf", "all"):
                await checks.spf(**sender)
            if part in ("dkim", "all"):
                await checks.dkim(raw)
            if part in ("dmarc", "all"):
                assert (await checks.dmarc(raw, spf, dkim)).result == "pass"

        for _ in range(50):
            await one()
        callgrind.control("--zero", os.getpid())  # it waits: nothing else runs meanwhile
        for _ in range(CHECKS):
            await one()
        callgrind.control("--dump", os.getpid())
    finally:
        sending.stop()


def _count(part: str, out_dir: Path) -> float:
    """Instructions per check of the event loop's thread (callgrind's thread 1), from the dump."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    subprocess.run(["valgrind", "--tool=callgrind", "--separate-threads=yes",
                    f"--callgrind-out-file={out_dir}/{part}", sys.executable, __file__, "--run", part],
                   check=True, capture_output=True, env=env)
    dump = next(iter(glob.glob(f"{out_dir}/{part}.*-01")))
    if not (total := callgrind.total_instructions(dump)):
        raise SystemExit(f"bench/checks_instructions.py: no count in {dump}")
    return total / CHECKS


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--run":
        asyncio.run(_run(sys.argv[2]))
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("bench/checks_instructions.py needs valgrind (apt-get install valgrind)")
    out_dir = Path(tempfile.mkdtemp(prefix="checks-instructions-"))
    try:
        print(f"conduit from {sys.path[0]}: instructions per check of a signed 4 KiB message, warm caches")
        for part in PARTS:
            label = "SPF + DKIM + DMARC" if part == "all" else part.upper()
            print(f"{label:>18}: {_count(part, out_dir):10,.0f}", flush=True)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
