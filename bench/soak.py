"""Soak (`make soak`): a long run of mail through one ``conduit serve``, checking that nothing is
lost and that memory stays flat.

``SOAK_MESSAGES`` (100,000) messages of ``SOAK_SIZE`` bytes (4096) are sent by Postfix's
``smtp-source`` (20 sessions) in rounds of ``SOAK_ROUND`` (10,000); after each round, once the
receiver has every message so far, the resident memory (``VmRSS``) of each Conduit process is
read, and the database's size (the SQLite file with its WAL, or PostgreSQL's
``pg_database_size``). The first round is the warm-up. The run fails if the receiver misses a
message, or if a process ends more than 10 % above its size after the warm-up (the project's bar).
The database's growth after the warm-up is reported per message, beside the message's size: with
messages kept (``CONDUIT_MESSAGE_RETENTION_DAYS``, set for the soak by
``BENCH_CONDUIT_MESSAGE_RETENTION_DAYS``) it is the stored bytes plus the rows' overhead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conduit_bench.load import smtp_source
from conduit_bench.measurements import proc_status_kib, process_tree
from conduit_bench.processes import CHILDREN, Conduit, Receiver

MESSAGES = int(os.environ.get("SOAK_MESSAGES") or 100_000)
ROUND = int(os.environ.get("SOAK_ROUND") or 10_000)
SIZE = int(os.environ.get("SOAK_SIZE") or 4096)
SESSIONS = 20
GROWTH_LIMIT = 0.10


def rss_by_process(conduit: Conduit) -> dict[str, float]:
    sizes = {}
    for pid in process_tree(conduit.pid):
        role = "serve (API + SMTP)" if pid == conduit.pid else f"worker process {pid}"
        sizes[role] = proc_status_kib(pid, "VmRSS") / 1024
    return sizes


def main() -> int:
    print(f"soak: {MESSAGES:,} messages of {SIZE} bytes in rounds of {ROUND:,}, {SESSIONS} sessions", flush=True)
    with tempfile.TemporaryDirectory(prefix="conduit-soak-") as tmp:
        out = Path(tmp)
        receiver = Receiver(out)
        conduit = Conduit(os.environ.get("BENCH_DATABASE_URL"), out, out / "conduit.log")
        try:
            address = conduit.add_webhook(receiver.url)
            rows, sent, started = [], 0, time.time()
            while sent < MESSAGES:
                count = min(ROUND, MESSAGES - sent)
                round_started = time.time()
                smtp_source(conduit.smtp_port, messages=count, size=SIZE, reuse=False, sessions=SESSIONS,
                                  to=address)
                sent += count
                receiver.wait_for(sent, 120, conduit.proc)
                rate = count / (time.time() - round_started)
                rows.append((sent, rate, rss_by_process(conduit), database_bytes(conduit.database_url)))
                print(f"  {sent:>7,} delivered  {rate:6.0f}/s  " +
                      "  ".join(f"{role}: {mib:.0f} MiB" for role, mib in rows[-1][2].items()) +
                      f"  database: {rows[-1][3] / 2**20:.0f} MiB", flush=True)
            stats = receiver.stats()
        finally:
            conduit.stop()
            receiver.proc.terminate()
            receiver.proc.wait()
    elapsed = time.time() - started
    print(f"soak: {stats['unique']:,} distinct messages received of {MESSAGES:,} sent "
          f"({stats['duplicates']} duplicates) in {elapsed:.0f} s")
    failures = []
    if stats["unique"] != MESSAGES:
        failures.append(f"{MESSAGES - stats['unique']} messages missing")
    if len(rows) > 1:
        per_message = (rows[-1][3] - rows[0][3]) / (rows[-1][0] - rows[0][0])
        print(f"soak: database grew {per_message:,.0f} bytes per message after the warm-up "
              f"(messages of {SIZE:,} bytes: {per_message - SIZE:+,.0f} bytes of overhead each)")
    warm = rows[0][2]
    for role, end in rows[-1][2].items():
        base = warm.get(role)
        if base is None:
            failures.append(f"{role} was not there after the warm-up (restarted?)")
            continue
        growth = (end - base) / base
        print(f"soak: {role}: {base:.0f} MiB after the warm-up, {end:.0f} MiB at the end ({growth:+.1%})")
        if growth > GROWTH_LIMIT:
            failures.append(f"{role} grew {growth:.1%} after the warm-up (limit {GROWTH_LIMIT:.0%})")
    for failure in failures:
        print(f"soak: FAILED: {failure}")
    return 1 if failures else 0


def database_bytes(url: str) -> int:
    """The database's size on disk: SQLite's file and its WAL, or PostgreSQL's own count."""
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    plain = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    size = subprocess.run(["psql", plain, "-tAc", "SELECT pg_database_size(current_database())"],
                          capture_output=True, text=True, check=True, timeout=30).stdout
    return int(size.strip())


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        CHILDREN.stop_all()
