"""The load: Postfix's ``smtp-source`` against Conduit and the baselines (``smtp-sink``, a bare
aiosmtpd), and the paced SMTP client of the latency run."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from conduit_bench.measurements import proc_cpu_seconds
from conduit_bench.processes import CHILDREN, find_tool, free_port, wait_for_port
from conduit_bench.settings import DOMAIN, ROOT, SENDER


def smtp_source(port: int, *, messages: int, size: int, reuse: bool, sessions: int, to: str,
                message_file: Path | None = None) -> tuple[float, float]:
    """Run Postfix's smtp-source; returns (wall seconds, its own CPU seconds). Raises on failure.

    With ``message_file`` every message is that file (``-F``), else smtp-source makes one with
    ``size`` bytes of body (``-l``)."""
    content = ["-F", str(message_file)] if message_file else ["-l", str(size)]
    args = [find_tool("smtp-source"), "-s", str(sessions), *content, "-m", str(messages),
            "-f", SENDER, "-t", to, "-M", "client.bench.example", "-C", "5"]
    if reuse:
        args.append("-d")
    args.append(f"127.0.0.1:{port}")
    started = time.time()
    proc = CHILDREN.start(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.time() - started
    output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    CHILDREN.procs.remove(proc)
    if proc.returncode != 0 or "fatal" in output:
        raise RuntimeError(f"smtp-source failed (status {proc.returncode}): {output.strip()[:2000]}")
    return wall, usage.ru_utime + usage.ru_stime


def start_smtp_sink() -> tuple[subprocess.Popen, int]:
    port = free_port()
    args = [find_tool("smtp-sink")]
    if os.geteuid() == 0:
        args += ["-u", "nobody"]  # smtp-sink refuses to keep root privileges
    args += [f"127.0.0.1:{port}", "1024"]
    sink = CHILDREN.start(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, sink, "smtp-sink")
    return sink, port


def start_aiosmtpd_sink() -> tuple[subprocess.Popen, int]:
    sink = CHILDREN.start([sys.executable, str(ROOT / "bench" / "aiosmtpd_sink.py")], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL)
    line = sink.stdout.readline().decode().strip() if sink.stdout else ""
    if not line.startswith("PORT "):
        raise RuntimeError(f"aiosmtpd sink did not start (said {line!r})")
    port = int(line.split()[1])
    wait_for_port(port, sink, "aiosmtpd sink")
    return sink, port


BASELINE_SECONDS = 3.0  # a baseline run this long is long enough to be stable, short enough to be cheap


def baseline(start: Callable[[], tuple[subprocess.Popen, int]], *, messages: int, size: int, reuse: bool,
             sessions: int, message_file: Path | None = None) -> dict:
    """Accept rate of a discarding server under the same smtp-source load: a 1,000-message warm-up
    that also estimates the rate, then a run of at least ``messages`` (more when that would take
    less than ``BASELINE_SECONDS``: sub-second runs are noisy)."""
    sink, port = start()
    to = f"box@{DOMAIN}"
    try:
        warm_wall, _ = smtp_source(port, messages=1000, size=size, reuse=reuse, sessions=sessions, to=to,
                                   message_file=message_file)
        count = int(min(max(messages, 1000 / warm_wall * BASELINE_SECONDS), 60000))
        cpu0 = proc_cpu_seconds(sink.pid)
        wall, source_cpu = smtp_source(port, messages=count, size=size, reuse=reuse, sessions=sessions, to=to,
                                       message_file=message_file)
        sink_cpu = proc_cpu_seconds(sink.pid) - cpu0
    finally:
        CHILDREN.stop(sink)
    return {"accepted_per_s": count / wall, "messages": count, "wall_s": wall, "server_cpu_s": sink_cpu,
            "load_generator_cpu_s": source_cpu}


def latency_message(n: int, tag: str, template: bytes) -> tuple[str, bytes]:
    """``template`` (a DKIM-signed message that does not sign Message-ID) with a Message-ID of its
    own, and the end of DATA."""
    message_id = f"<lat-{n}.{tag}@{DOMAIN}>"
    return message_id, f"Message-ID: {message_id}\r\n".encode() + template + b".\r\n"


async def _reply(reader: asyncio.StreamReader) -> str:
    while True:
        line = (await reader.readline()).decode(errors="replace")
        if not line:
            raise ConnectionError("server closed the connection")
        if len(line) < 4 or line[3] != "-":
            return line


async def send_one(port: int, to: str, message: bytes) -> tuple[float, float]:
    """One SMTP transaction on a new connection; returns (end of DATA, 250 reply) wall times."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        steps = [None, b"EHLO client.bench.example\r\n", f"MAIL FROM:<{SENDER}>\r\n".encode(),
                 f"RCPT TO:<{to}>\r\n".encode(), b"DATA\r\n"]
        for command in steps:
            if command:
                writer.write(command)
            reply = await _reply(reader)
            if reply[0] not in "23":
                raise RuntimeError(f"SMTP {command!r} answered {reply.strip()}")
        writer.write(message)
        await writer.drain()
        end_of_data = time.time()
        reply = await _reply(reader)
        accepted = time.time()
        if not reply.startswith("250"):
            raise RuntimeError(f"DATA answered {reply.strip()}")
        writer.write(b"QUIT\r\n")
        await _reply(reader)
        return end_of_data, accepted
    finally:
        writer.close()


async def paced_load(port: int, to: str, *, rate: float, count: int, sessions: int,
                     template: bytes) -> tuple[dict, int]:
    tag = secrets.token_hex(4)
    slots = asyncio.Semaphore(sessions)
    sent: dict[str, tuple[float, float]] = {}
    late = 0

    async def one(n: int) -> None:
        message_id, message = latency_message(n, tag, template)
        async with slots:
            sent[message_id] = await send_one(port, to, message)

    start = time.monotonic()
    tasks = []
    for n in range(count):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.05:
            late += 1
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    return sent, late


def run_async(coro):
    try:
        import uvloop  # a cheaper load generator leaves more CPU to Conduit
        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)
