"""Memory of one large message (`make bench-memory`): how much each Conduit process grows while it
takes a message of ``BENCH_MEMORY_MIB`` (default 25 MiB, Conduit's default size limit) over SMTP
and delivers it to the benchmark receiver.

For each message shape (one attachment that is too big to inline in the payload, and attachments
small enough to be inlined as base64), a fresh ``conduit serve``: its processes' ``VmRSS`` is
sampled every 10 ms from before the message until the receiver has it; the growth of each
process's peak over its resting size is reported, as a multiple of the message's size. The
project's bar: no more than 4 times the message's size.
"""

from __future__ import annotations

import os
import smtplib
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conduit_bench.measurements import proc_status_kib, process_tree
from conduit_bench.processes import CHILDREN, Conduit, Receiver

MIB = 1024 * 1024
SIZE = int(float(os.environ.get("BENCH_MEMORY_MIB") or 25) * MIB)


def message(shape: str, to: str) -> bytes:
    """A message of about SIZE bytes on the wire (base64 in lines: 1.37 times the attachments)."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "big@example.org", to, f"memory {shape}"
    msg["Message-ID"] = f"<memory-{shape}-{time.time_ns()}@example.org>"
    msg.set_content("A large message for the memory benchmark.\n")
    budget = int(SIZE * 0.73) - 64 * 1024  # base64 in 76-character lines, and headroom for MIME
    parts = [budget] if shape == "one-big-attachment" else [budget // 4] * 4
    for n, size in enumerate(parts):
        msg.add_attachment(os.urandom(size), maintype="application", subtype="octet-stream",
                           filename=f"part{n}.bin")
    raw = msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert len(raw) <= SIZE, (len(raw), SIZE)
    return raw


class TreeSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self._done = pid, {}, threading.Event()

    def sample(self) -> dict[int, int]:
        sizes = {}
        for member in process_tree(self.pid):
            try:
                sizes[member] = proc_status_kib(member, "VmRSS") * 1024
            except OSError:
                pass
        return sizes

    def run(self) -> None:
        while not self._done.is_set():
            for member, size in self.sample().items():
                self.peak[member] = max(self.peak.get(member, 0), size)
            self._done.wait(0.01)

    def stop(self) -> dict[int, int]:
        self._done.set()
        self.join()
        return self.peak


def measure(shape: str, workdir: Path) -> list[str]:
    receiver = Receiver(workdir)
    conduit = Conduit(None, workdir, workdir / f"conduit-{shape}.log")
    try:
        to = conduit.add_webhook(receiver.url)
        raw = message(shape, to)
        time.sleep(3)  # let start-up (migrations, the API's first requests) settle
        sampler = TreeSampler(conduit.pid)
        resting = sampler.sample()
        sampler.start()
        with smtplib.SMTP("127.0.0.1", conduit.smtp_port, timeout=120) as smtp:
            smtp.sendmail("big@example.org", [to], raw)
        receiver.wait_for(1, stall_seconds=120, sender=conduit.proc)
        time.sleep(0.5)
        peak = sampler.stop()
        rows = []
        for pid, rest in resting.items():
            role = "serve (API + SMTP)" if pid == conduit.pid else "worker process"
            growth = peak.get(pid, rest) - rest
            rows.append(f"| {shape} | {len(raw) / MIB:.1f} | {role} | {rest / MIB:.0f} "
                        f"| {peak.get(pid, rest) / MIB:.0f} | {growth / MIB:.0f} | {growth / len(raw):.2f} |")
        return rows
    finally:
        conduit.stop()
        receiver.proc.terminate()
        receiver.proc.wait()


def main() -> int:
    print(f"bench-memory: one message of {SIZE / MIB:.0f} MiB per shape; VmRSS sampled every 10 ms", flush=True)
    rows = ["| shape | message MiB | process | resting MiB | peak MiB | growth MiB | growth / message size |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory(prefix="conduit-bench-memory-") as tmp:
        for shape in ("one-big-attachment", "four-inlined-attachments"):
            workdir = Path(tmp) / shape
            workdir.mkdir()
            rows += measure(shape, workdir)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        CHILDREN.stop_all()
