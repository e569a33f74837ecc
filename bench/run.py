"""Conduit's load benchmark (`make bench`): SMTP acceptance, end-to-end delivery, latency, memory, CPU.

What it does, for each configuration (message size × connection use, 20 concurrent sessions):

1. **Conduit**: a fresh ``conduit serve`` process (a new SQLite file, or ``BENCH_DATABASE_URL``)
   on free loopback ports; an account and a webhook ``box-<tag>@bench.example`` pointing at the
   receiver (``bench/receiver.py``, its own process); a warm-up of ``BENCH_WARMUP`` messages; then
   the load from Postfix's ``smtp-source``. Measured:

   - *accepted/s at SMTP*: messages / ``smtp-source`` wall time (every ``250`` is after commit);
   - *delivered/s end to end*: messages / (last arrival at the receiver - start of the load); the
     receiver must have got every message (distinct ``Message-ID``s, which ``smtp-source`` makes
     unique), otherwise the run fails;
   - *latency under saturation* (accept → receipt): Conduit's message id (``msg_…``) carries the
     millisecond at which the message was stored (after the end of DATA, just before the commit
     and the ``250``); the receiver records its arrival time. Under saturation this is mostly
     queueing in Conduit;
   - *peak RSS* (the highest ``VmRSS`` sampled every 50 ms during the warm-up and the load) and
     *CPU seconds per 1,000 messages* (user + system, all threads) of the Conduit process, from
     ``/proc``.

2. **Baseline**, once Conduit has stopped: Postfix's ``smtp-sink`` (C, discards everything) on a
   free loopback port, loaded by ``smtp-source`` with exactly the same options and message count;
   its wall time gives the messages per second this machine can accept over SMTP at all, and
   Conduit's rates are reported as a ratio of it.

3. **Latency at half of the maximum**: a fresh Conduit, loaded at a fixed rate (half the
   end-to-end rate measured for 4 KiB, one connection per message; ``BENCH_LATENCY_RATE`` to set
   it) by a small SMTP client in this process that time-stamps the end of DATA (the moment the
   final ``.`` was written) and the ``250`` reply per message, each with a unique ``Message-ID``
   that the receiver's record is matched by: p50/p95/p99 from the end of DATA to the webhook.

Results: a table on stdout, ``bench-results/bench-<time>.json`` (and ``latest.json``), a chart
``docs/performance.png``. With ``BENCH_PROFILE=1`` an extra 4 KiB run (``BENCH_PROFILE=4k,100k``:
one per configuration named) is sampled with py-spy and summarised in
``bench-results/profile-*.txt`` (the measured runs are never profiled).

Settings (environment):

- ``BENCH_MESSAGES``: messages per configuration. By default 5,000, fewer when the warm-up's
  end-to-end rate says 5,000 would take longer than ``BENCH_SECONDS`` (75), never fewer than
  1,000: this keeps a full run under ten minutes;
- ``BENCH_SESSIONS`` (20), ``BENCH_WARMUP`` (200 messages);
- ``BENCH_CONFIGS`` (``4k,100k,4k-reuse``; ``100k-reuse`` also exists);
- ``BENCH_DATABASE_URL``: default a fresh SQLite file per Conduit start; for PostgreSQL give an
  empty database of its own;
- ``BENCH_LATENCY_RATE`` (default half the 4 KiB end-to-end rate), ``BENCH_LATENCY_SECONDS`` (20;
  0 skips the latency run);
- ``BENCH_WORKER_PROCESSES``: ``conduit serve``'s worker processes (default Conduit's: one on 2+
  cores); the harness passes no other ``CONDUIT_*`` variable from its environment on;
- ``BENCH_PROFILE`` (0), ``BENCH_STALL_SECONDS`` (60: fail when no message arrives for this long),
  ``BENCH_LOG_LEVEL`` (Conduit's, default INFO as in production), ``BENCH_OUT`` (bench-results),
  ``BENCH_CHART`` (docs/performance.png).

The CPU used meanwhile by processes outside the benchmark is measured (``/proc/stat``) and
reported; above 0.2 cores a warning says the numbers are too low. Before each Conduit run the
harness waits up to ``BENCH_QUIET_WAIT`` seconds (30) for such processes to use under 0.15 cores.

Every process it starts is stopped when it ends, including on failure or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path

from profile_summary import summarise  # bench/, this file's directory, is on sys.path

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "bench.example"
SENDER = "sender@example.org"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONFIGS = {  # name: (message payload bytes for smtp-source -l, reuse connections with -d)
    "4k": (4 * 1024, False),
    "100k": (100 * 1024, False),
    "4k-reuse": (4 * 1024, True),
    "100k-reuse": (100 * 1024, True),
}
LABELS = {"4k": "4 KiB", "100k": "100 KiB", "4k-reuse": "4 KiB, -d", "100k-reuse": "100 KiB, -d"}
# The targets (end to end, messages/s) and latency bound.
TARGETS = {"4k": 1200, "100k": 400, "4k-reuse": 2000}
LATENCY_P99_TARGET_MS = 250
DEFAULT_MESSAGES, MIN_MESSAGES = 5000, 1000
QUIET_WAIT = float(os.environ.get("BENCH_QUIET_WAIT") or 30)


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


# --------------------------------------------------------------------------------- processes


class Children:
    """Every subprocess we start, so that all of them are stopped however we exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(args, **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if proc.poll() is None:
            try:
                proc.send_signal(sig)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc, timeout=10)


CHILDREN = Children()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f} s")


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


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def find_tool(name: str) -> str:
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}")
                                        if os.access(p, os.X_OK)), None)
    if not found:
        raise SystemExit(f"bench: {name} not found; install Debian's postfix package (make bench does)")
    return found


def http_json(method: str, url: str, body: dict | None = None, token: str | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


# --------------------------------------------------------------------------------- receiver


class Receiver:
    def __init__(self, out_dir: Path) -> None:
        self.log = (out_dir / "receiver.log").open("ab")
        self.proc = CHILDREN.start([sys.executable, str(ROOT / "bench" / "receiver.py")],
                                   stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode().strip() if self.proc.stdout else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"receiver did not start (said {line!r}); see {self.log.name}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def _get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=60) as response:
            return json.loads(response.read())

    def stats(self) -> dict:
        return self._get("/_stats")

    def records(self) -> list[list]:
        return self._get("/_records")

    def reset(self) -> None:
        self._get("/_reset")

    def cpu(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def wait_for(self, count: int, stall_seconds: float, sender: subprocess.Popen | None = None) -> dict:
        """Until ``count`` distinct messages arrived; raise if nothing new arrives for too long, or
        at once if ``sender`` (the Conduit process) has exited."""
        last, last_change = -1, time.monotonic()
        while True:
            stats = self.stats()
            if stats["unique"] >= count:
                return stats
            if sender is not None and sender.poll() is not None:
                raise RuntimeError(f"Conduit exited (status {sender.returncode}) with {stats['unique']} of "
                                   f"{count} messages delivered")
            if stats["unique"] != last:
                last, last_change = stats["unique"], time.monotonic()
            elif time.monotonic() - last_change > stall_seconds:
                raise RuntimeError(f"messages missing: the receiver has {stats['unique']} of {count} "
                                   f"(no new one for {stall_seconds:.0f} s)")
            time.sleep(0.05)

    def stop(self) -> None:
        CHILDREN.stop(self.proc)
        self.log.close()


# --------------------------------------------------------------------------------- conduit


class Conduit:
    """``conduit serve`` as a child process on free loopback ports, with an account and a webhook."""

    def __init__(self, database_url: str | None, workdir: Path, log_path: Path) -> None:
        self.workdir = workdir
        self.database_url = database_url or f"sqlite+aiosqlite:///{workdir / 'conduit.db'}"
        self.http_port, self.smtp_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUIT_")}
        env.update({
            "CONDUIT_DATABASE_URL": self.database_url,
            "CONDUIT_HTTP_HOST": "127.0.0.1", "CONDUIT_HTTP_PORT": str(self.http_port),
            "CONDUIT_SMTP_HOST": "127.0.0.1", "CONDUIT_SMTP_PORT": str(self.smtp_port),
            "CONDUIT_SECRET_KEY": "bench-" + "k" * 40,
            "CONDUIT_PUBLIC_DOMAINS": DOMAIN,
            "CONDUIT_ALLOW_PRIVATE_TARGETS": "true",
            "CONDUIT_INBOUND_AUTH_CHECKS": "false",
            "CONDUIT_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        })
        if workers := os.environ.get("BENCH_WORKER_PROCESSES"):  # CONDUIT_* from outside are not passed on
            env["CONDUIT_WORKER_PROCESSES"] = workers
        self.log = log_path.open("ab")
        self.proc = CHILDREN.start([sys.executable, "-m", "conduit", "serve"], env=env, cwd=workdir,
                                   stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_port(self.smtp_port, self.proc, "conduit serve (SMTP)")
        wait_for_port(self.http_port, self.proc, "conduit serve (API)")
        self.pid = self.proc.pid

    def add_webhook(self, target_url: str) -> str:
        """An account, a session and a webhook on the public domain; returns the webhook's address."""
        api = f"http://127.0.0.1:{self.http_port}/api/v1"
        tag = secrets.token_hex(4)
        email, password = f"bench-{tag}@example.com", "bench passphrase " + tag
        http_json("POST", f"{api}/accounts", {"email": email, "password": password})
        token = http_json("POST", f"{api}/sessions", {"email": email, "password": password})["access_token"]
        address = f"box-{tag}@{DOMAIN}"
        http_json("POST", f"{api}/webhooks", {"address": address, "target_url": target_url}, token=token)
        return address

    def cpu(self) -> float:
        return tree_cpu_seconds(self.pid)

    def peak_rss_mib(self) -> float:
        return tree_status_kib(self.pid, "VmHWM") / 1024

    def stop(self) -> None:
        CHILDREN.stop(self.proc, timeout=30)
        self.log.close()


# --------------------------------------------------------------------------------- load


def smtp_source(port: int, *, messages: int, size: int, reuse: bool, sessions: int, to: str) -> tuple[float, float]:
    """Run Postfix's smtp-source; returns (wall seconds, its own CPU seconds). Raises on failure."""
    args = [find_tool("smtp-source"), "-s", str(sessions), "-l", str(size), "-m", str(messages),
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


def _start_smtp_sink() -> tuple[subprocess.Popen, int]:
    port = free_port()
    args = [find_tool("smtp-sink")]
    if os.geteuid() == 0:
        args += ["-u", "nobody"]  # smtp-sink refuses to keep root privileges
    args += [f"127.0.0.1:{port}", "1024"]
    sink = CHILDREN.start(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, sink, "smtp-sink")
    return sink, port


def _start_aiosmtpd_sink() -> tuple[subprocess.Popen, int]:
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
             sessions: int) -> dict:
    """Accept rate of a discarding server under the same smtp-source load: a 1,000-message warm-up
    that also estimates the rate, then a run of at least ``messages`` (more when that would take
    less than ``BASELINE_SECONDS``: sub-second runs are noisy)."""
    sink, port = start()
    to = f"box@{DOMAIN}"
    try:
        warm_wall, _ = smtp_source(port, messages=1000, size=size, reuse=reuse, sessions=sessions, to=to)
        count = int(min(max(messages, 1000 / warm_wall * BASELINE_SECONDS), 60000))
        cpu0 = proc_cpu_seconds(sink.pid)
        wall, source_cpu = smtp_source(port, messages=count, size=size, reuse=reuse, sessions=sessions, to=to)
        sink_cpu = proc_cpu_seconds(sink.pid) - cpu0
    finally:
        CHILDREN.stop(sink)
    return {"accepted_per_s": count / wall, "messages": count, "wall_s": wall, "server_cpu_s": sink_cpu,
            "load_generator_cpu_s": source_cpu}


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


@dataclass
class Result:
    config: str
    label: str
    size_bytes: int
    reuse_connections: bool
    messages: int
    sessions: int
    smtp_wall_s: float = 0.0
    accepted_per_s: float = 0.0
    delivered_s: float = 0.0
    delivered_per_s: float = 0.0
    duplicates: int = 0
    accept_to_receipt_ms: dict = field(default_factory=dict)
    rss_idle_mib: float = 0.0
    peak_rss_mib: float = 0.0  # highest VmRSS sampled during the warm-up and the measured load
    rss_end_mib: float = 0.0
    lifetime_hwm_mib: float = 0.0  # VmHWM: includes start-up and the account's Argon2 hashing
    conduit_cpu_s: float = 0.0
    cpu_s_per_1k: float = 0.0
    conduit_cores_busy: float = 0.0
    receiver_cpu_s: float = 0.0
    database_cpu_s: float = 0.0  # local PostgreSQL processes, when the database is one
    other_processes_cores: float = 0.0  # CPU used meanwhile by processes outside the benchmark
    load_generator_cpu_s: float = 0.0
    smtp_sink: dict = field(default_factory=dict)
    aiosmtpd_sink: dict = field(default_factory=dict)
    ratio_to_smtp_sink: float = 0.0
    delivered_ratio_to_smtp_sink: float = 0.0
    target_delivered_per_s: int | None = None
    target_met: bool | None = None


def choose_count(fixed: int | None, warmup_rate: float, budget_s: float) -> int:
    """``BENCH_MESSAGES`` when given; else 5,000, fewer when the warm-up's end-to-end rate says that
    would take longer than the time budget per configuration (never fewer than 1,000)."""
    if fixed:
        return fixed
    return int(max(MIN_MESSAGES, min(DEFAULT_MESSAGES, warmup_rate * budget_s)) // 100 * 100)


def run_config(name: str, *, messages: int | None, budget_s: float, sessions: int, warmup: int,
               receiver: Receiver, out_dir: Path, database_url: str | None, stall: float, tmp: Path) -> Result:
    size, reuse = CONFIGS[name]
    result = Result(config=name, label=LABELS[name], size_bytes=size, reuse_connections=reuse,
                    messages=0, sessions=sessions, target_delivered_per_s=TARGETS.get(name))
    workdir = Path(tempfile.mkdtemp(prefix=f"conduit-{name}-", dir=tmp))
    conduit = Conduit(database_url, workdir, out_dir / f"conduit-{name}.log")
    try:
        address = conduit.add_webhook(receiver.url)
        result.rss_idle_mib = tree_status_kib(conduit.pid, "VmRSS") / 1024
        sampler = RssSampler(conduit.pid)
        sampler.start()
        wait_until_quiet(QUIET_WAIT)
        receiver.reset()
        warmup_rate = 0.0
        if warmup:
            started = time.time()
            smtp_source(conduit.smtp_port, messages=warmup, size=size, reuse=reuse, sessions=sessions, to=address)
            receiver.wait_for(warmup, stall, conduit.proc)
            warmup_rate = warmup / (time.time() - started)
            receiver.reset()
        messages = result.messages = choose_count(messages, warmup_rate or 1e9, budget_s)
        cpu0, rcv0, machine0, self0 = conduit.cpu(), receiver.cpu(), machine_busy_seconds(), _own_cpu()
        pg0 = postgres_cpu()
        print(f"[{name}] Conduit: {messages} messages of {size} bytes, {sessions} sessions"
              f"{', connections reused (-d)' if reuse else ', one connection per message'}", flush=True)
        started = time.time()
        result.smtp_wall_s, result.load_generator_cpu_s = smtp_source(
            conduit.smtp_port, messages=messages, size=size, reuse=reuse, sessions=sessions, to=address)
        receiver.wait_for(messages, stall, conduit.proc)
        cpu1, rcv1, machine1, self1 = conduit.cpu(), receiver.cpu(), machine_busy_seconds(), _own_cpu()
        result.database_cpu_s = cpu_delta(pg0, postgres_cpu()) if database_url else 0.0
        window = time.time() - started
        time.sleep(0.3)  # let a stray duplicate show up
        records = receiver.records()
        stats = receiver.stats()
        if stats["unique"] != messages:
            raise RuntimeError(f"[{name}] the receiver got {stats['unique']} distinct messages, {messages} were sent")
        result.duplicates = stats["duplicates"]
        result.delivered_s = max(r[0] for r in records) - started
        result.accepted_per_s = messages / result.smtp_wall_s
        result.delivered_per_s = messages / result.delivered_s
        latencies = [(arrival - t) * 1000 for arrival, msg_id, *_ in records if (t := id_time(msg_id)) is not None]
        result.accept_to_receipt_ms = percentiles(latencies)
        result.peak_rss_mib = sampler.stop()
        result.rss_end_mib = tree_status_kib(conduit.pid, "VmRSS") / 1024
        result.lifetime_hwm_mib = conduit.peak_rss_mib()
        result.conduit_cpu_s = cpu1 - cpu0
        result.cpu_s_per_1k = result.conduit_cpu_s / messages * 1000
        result.conduit_cores_busy = result.conduit_cpu_s / result.delivered_s
        result.receiver_cpu_s = rcv1 - rcv0
        ours = (result.conduit_cpu_s + result.receiver_cpu_s + result.load_generator_cpu_s + self1 - self0
                + result.database_cpu_s)
        result.other_processes_cores = max(0.0, (machine1 - machine0 - ours) / window)
        if result.other_processes_cores > 0.2:
            print(f"[{name}] WARNING: other processes used {result.other_processes_cores:.2f} cores during the "
                  "run: the numbers are lower than this machine can do", flush=True)
        print(f"[{name}] accepted {result.accepted_per_s:.1f}/s, delivered {result.delivered_per_s:.1f}/s, "
              f"p99 accept→receipt {result.accept_to_receipt_ms['p99']:.0f} ms", flush=True)
    finally:
        conduit.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"[{name}] baselines: smtp-sink and a bare aiosmtpd, the same load", flush=True)
    result.smtp_sink = baseline(_start_smtp_sink, messages=messages, size=size, reuse=reuse, sessions=sessions)
    result.aiosmtpd_sink = baseline(_start_aiosmtpd_sink, messages=messages, size=size, reuse=reuse,
                                    sessions=sessions)
    result.ratio_to_smtp_sink = result.accepted_per_s / result.smtp_sink["accepted_per_s"]
    result.delivered_ratio_to_smtp_sink = result.delivered_per_s / result.smtp_sink["accepted_per_s"]
    if result.target_delivered_per_s:
        result.target_met = result.delivered_per_s >= result.target_delivered_per_s
    print(f"[{name}] smtp-sink accepted {result.smtp_sink['accepted_per_s']:.0f}/s, bare aiosmtpd "
          f"{result.aiosmtpd_sink['accepted_per_s']:.0f}/s; Conduit/smtp-sink "
          f"{result.ratio_to_smtp_sink:.3f} at SMTP, {result.delivered_ratio_to_smtp_sink:.3f} end to end", flush=True)
    return result


# --------------------------------------------------------------------------------- latency run


def _message(n: int, tag: str, size: int) -> tuple[str, bytes]:
    message_id = f"<lat-{n}.{tag}@{DOMAIN}>"
    line = b"X" * 76 + b"\r\n"
    body = line * (size // len(line) + 1)
    head = (f"From: <{SENDER}>\r\nTo: <box@{DOMAIN}>\r\nSubject: latency {n}\r\nMessage-ID: {message_id}\r\n"
            f"Date: {formatdate(usegmt=True)}\r\n\r\n").encode()
    return message_id, head + body[:size] + b"\r\n.\r\n"


async def _reply(reader: asyncio.StreamReader) -> str:
    while True:
        line = (await reader.readline()).decode(errors="replace")
        if not line:
            raise ConnectionError("server closed the connection")
        if len(line) < 4 or line[3] != "-":
            return line


async def _send_one(port: int, to: str, message: bytes) -> tuple[float, float]:
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


async def _paced_load(port: int, to: str, *, rate: float, count: int, sessions: int, size: int) -> tuple[dict, int]:
    tag = secrets.token_hex(4)
    slots = asyncio.Semaphore(sessions)
    sent: dict[str, tuple[float, float]] = {}
    late = 0

    async def one(n: int) -> None:
        message_id, message = _message(n, tag, size)
        async with slots:
            sent[message_id] = await _send_one(port, to, message)

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


def latency_run(rate: float, *, seconds: int, sessions: int, warmup: int, receiver: Receiver, out_dir: Path,
                database_url: str | None, stall: float, tmp: Path) -> dict:
    count = max(50, int(rate * seconds))
    size = 4 * 1024
    print(f"[latency] {count} messages of 4 KiB at {rate:.0f}/s, one connection each", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="conduit-latency-", dir=tmp))
    conduit = Conduit(database_url, workdir, out_dir / "conduit-latency.log")
    try:
        address = conduit.add_webhook(receiver.url)
        sampler = RssSampler(conduit.pid)
        sampler.start()
        wait_until_quiet(QUIET_WAIT)
        receiver.reset()
        if warmup:
            smtp_source(conduit.smtp_port, messages=warmup, size=size, reuse=False, sessions=sessions, to=address)
            receiver.wait_for(warmup, stall, conduit.proc)
            receiver.reset()
        cpu0, machine0, self0, rcv0 = conduit.cpu(), machine_busy_seconds(), _own_cpu(), receiver.cpu()
        pg0 = postgres_cpu()
        started = time.time()
        sent, late = _run_async(_paced_load(conduit.smtp_port, address, rate=rate, count=count, sessions=sessions,
                                            size=size))
        receiver.wait_for(count, stall, conduit.proc)
        elapsed = time.time() - started
        cpu = conduit.cpu() - cpu0
        database_cpu = cpu_delta(pg0, postgres_cpu()) if database_url else 0.0
        ours = cpu + _own_cpu() - self0 + receiver.cpu() - rcv0 + database_cpu
        other = max(0.0, (machine_busy_seconds() - machine0 - ours) / elapsed)
        arrivals = {r[2]: r[0] for r in receiver.records() if r[2]}
        missing = [m for m in sent if m not in arrivals]
        if missing:
            raise RuntimeError(f"latency run: {len(missing)} messages never reached the receiver")
        end_to_end = [(arrivals[m] - end) * 1000 for m, (end, _) in sent.items()]
        smtp_reply = [(accepted - end) * 1000 for end, accepted in sent.values()]
        result = {"rate_per_s": rate, "messages": count, "size_bytes": size, "sessions_max": sessions,
                  "sends_behind_schedule": late, "end_of_data_to_receipt_ms": percentiles(end_to_end),
                  "end_of_data_to_250_ms": percentiles(smtp_reply), "conduit_cpu_s": cpu,
                  "conduit_cores_busy": cpu / elapsed, "other_processes_cores": other, "database_cpu_s": database_cpu, "peak_rss_mib": sampler.stop()}
        result["target_met"] = result["end_of_data_to_receipt_ms"]["p99"] < LATENCY_P99_TARGET_MS
        print("[latency] p50/p95/p99 end of DATA → webhook: "
              + "/".join(f"{result['end_of_data_to_receipt_ms'][p]:.0f}" for p in ("p50", "p95", "p99")) + " ms",
              flush=True)
        return result
    finally:
        conduit.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _run_async(coro):
    try:
        import uvloop  # a cheaper load generator leaves more CPU to Conduit
        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


# --------------------------------------------------------------------------------- profile


def profile_run(name: str, *, messages: int, sessions: int, warmup: int, receiver: Receiver, out_dir: Path,
                database_url: str | None, stall: float, tmp: Path, stamp: str) -> dict:
    """One configuration's load again, sampled by py-spy: 100 Hz, only the thread holding the GIL
    (``--gil``)."""
    # Conduit's CPU time is its event loop's: its aiosqlite threads mostly wait (in SQLite's busy
    # handler), which py-spy would otherwise count as running. So --gil shows where the CPU goes.
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(py_spy, os.X_OK):
        raise RuntimeError("BENCH_PROFILE needs py-spy (pip install py-spy)")
    size, reuse = CONFIGS[name]
    workdir = Path(tempfile.mkdtemp(prefix="conduit-profile-", dir=tmp))
    conduit = Conduit(database_url, workdir, out_dir / f"conduit-profile-{name}.log")
    raw = out_dir / f"profile-{name}-{stamp}.collapsed"
    try:
        address = conduit.add_webhook(receiver.url)
        receiver.reset()
        smtp_source(conduit.smtp_port, messages=warmup or 200, size=size, reuse=reuse, sessions=sessions, to=address)
        receiver.wait_for(warmup or 200, stall, conduit.proc)
        receiver.reset()
        print(f"[profile {name}] py-spy on Conduit during {messages} messages ({LABELS[name]})", flush=True)
        spy = CHILDREN.start([py_spy, "record", "--pid", str(conduit.pid), "--rate", "100", "--format", "raw",
                              "--threads", "--gil", "--subprocesses", "--output", str(raw)],
                             stdout=subprocess.DEVNULL, stderr=(out_dir / "py-spy.log").open("ab"))
        time.sleep(1.0)
        started = time.time()
        smtp_source(conduit.smtp_port, messages=messages, size=size, reuse=reuse, sessions=sessions, to=address)
        accepted_s = time.time() - started
        receiver.wait_for(messages, stall, conduit.proc)
        delivered_s = time.time() - started
        CHILDREN.stop(spy, sig=signal.SIGINT, timeout=60)
        if spy.returncode not in (0, -signal.SIGINT, 130) or not raw.exists():
            raise RuntimeError(f"py-spy ended with status {spy.returncode} and wrote no profile")
    finally:
        conduit.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarise(raw.read_text())
    (out_dir / f"profile-{name}-{stamp}.txt").write_text(summary)
    print(f"[profile {name}]\n{summary}")
    return {"config": name, "collapsed": _shown(raw), "summary": _shown(out_dir / f"profile-{name}-{stamp}.txt"),
            "accepted_per_s_while_profiled": messages / accepted_s,
            "delivered_per_s_while_profiled": messages / delivered_s}


# --------------------------------------------------------------------------------- report


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    mem_kib = proc_status_kib_file("/proc/meminfo", "MemTotal")
    try:
        postfix = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "postfix"], check=False, capture_output=True,
                                 text=True).stdout.strip()
    except OSError:
        postfix = ""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    import conduit
    return {"nproc": os.cpu_count(), "cpu_model": model, "ram_gib": round(mem_kib / 1024 / 1024, 1),
            "python": platform.python_version(), "kernel": platform.release(), "postfix": postfix,
            "conduit": conduit.__version__, "git_commit": commit}


def proc_status_kib_file(path: str, key: str) -> int:
    for line in Path(path).read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _db_cpu(r: Result) -> str:
    return f" (+ {r.database_cpu_s / r.messages * 1000:.1f} PostgreSQL)" if r.database_cpu_s else ""


def table(results: list[Result], latency: dict | None) -> str:
    head = ("| configuration | messages | smtp-sink accepted/s | bare aiosmtpd accepted/s | Conduit accepted/s | "
            "Conduit / smtp-sink | Conduit delivered/s (end to end) | delivered / smtp-sink | target, delivered/s |")
    lines = ["Throughput (20 concurrent SMTP sessions):", "", head, "|" + " --- |" * (head.count("|") - 1)]
    for r in results:
        target = (f"≥ {r.target_delivered_per_s:,}: {'met' if r.target_met else 'NOT met'}"
                  if r.target_delivered_per_s else "-")
        lines.append(f"| {r.label} | {r.messages:,} | {r.smtp_sink['accepted_per_s']:,.0f} | "
                     f"{r.aiosmtpd_sink['accepted_per_s']:,.0f} | {r.accepted_per_s:,.1f} | "
                     f"{r.ratio_to_smtp_sink:.4f} | "
                     f"{r.delivered_per_s:,.1f} | {r.delivered_ratio_to_smtp_sink:.4f} | {target} |")
    head = ("| configuration | accept→receipt p50 / p95 / p99 ms (saturated) | Conduit RSS MiB idle / peak / end | "
            "Conduit CPU s per 1,000 msgs | Conduit cores busy | other processes, cores |")
    lines += ["", "Conduit's latency under saturation, memory and CPU:", "", head,
              "|" + " --- |" * (head.count("|") - 1)]
    for r in results:
        lat = r.accept_to_receipt_ms
        lines.append(f"| {r.label} | {_ms(lat['p50'])} / {_ms(lat['p95'])} / {_ms(lat['p99'])} | "
                     f"{r.rss_idle_mib:,.0f} / {r.peak_rss_mib:,.0f} / {r.rss_end_mib:,.0f} | "
                     f"{r.cpu_s_per_1k:.1f}{_db_cpu(r)} | {r.conduit_cores_busy:.2f} | {r.other_processes_cores:.2f} |")
    if latency:
        e2e, smtp = latency["end_of_data_to_receipt_ms"], latency["end_of_data_to_250_ms"]
        caption = (f"Latency at half of the maximum (4 KiB, one connection per message, "
                   f"{latency['rate_per_s']:.0f} messages/s, {latency['messages']} messages; other processes "
                   f"used {latency['other_processes_cores']:.2f} cores meanwhile):")
        lines += ["", caption, "",
                  "| measure | p50 ms | p95 ms | p99 ms | max ms |", "| --- | --- | --- | --- | --- |",
                  f"| end of DATA → webhook received | {_ms(e2e['p50'])} | {_ms(e2e['p95'])} | {_ms(e2e['p99'])} | "
                  + f"{_ms(e2e['max'])} |",
                  f"| end of DATA → 250 reply | {_ms(smtp['p50'])} | {_ms(smtp['p95'])} | {_ms(smtp['p99'])} | "
                  + f"{_ms(smtp['max'])} |", "",
                  f"p99 target < {LATENCY_P99_TARGET_MS} ms: {'met' if latency['target_met'] else 'NOT met'}"]
    return "\n".join(lines)


def chart(results: list[Result], latency: dict | None, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6.2))
    x = list(range(len(results)))
    width = 0.2
    bars = [("smtp-sink accepted/s", [r.smtp_sink["accepted_per_s"] for r in results], "#bbbbbb"),
            ("bare aiosmtpd accepted/s", [r.aiosmtpd_sink["accepted_per_s"] for r in results], "#8c8c8c"),
            ("Conduit accepted/s (SMTP)", [r.accepted_per_s for r in results], "#4c72b0"),
            ("Conduit delivered/s (end to end)", [r.delivered_per_s for r in results], "#dd8452")]
    for i, (label, values, color) in enumerate(bars):
        pos = [p + (i - 1.5) * width for p in x]
        left.bar(pos, values, width, label=label, color=color)
        for px, v in zip(pos, values, strict=True):
            left.annotate(f"{v:,.0f}", (px, v), ha="center", va="bottom", fontsize=7)
    for p, r in zip(x, results, strict=True):
        if r.target_delivered_per_s:
            left.hlines(r.target_delivered_per_s, p - 2 * width, p + 2 * width, colors="red",
                        linestyles="dashed", label="end-to-end target" if p == 0 else None)
    left.set_yscale("log")
    left.set_ylim(top=max(max(v) for _, v, _ in bars) * 4)
    left.set_xticks(x, [f"{r.label}\n{r.messages:,} messages" for r in results], fontsize=8)
    left.set_ylabel("messages per second (log scale)")
    left.set_title("Throughput, 20 concurrent SMTP sessions")
    left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)

    groups = [(f"{r.label}\nsaturated\n(accept→receipt)", r.accept_to_receipt_ms) for r in results]
    if latency:
        groups.append((f"4 KiB at {latency['rate_per_s']:.0f}/s\n(half max)\n(end of DATA→receipt)",
                       latency["end_of_data_to_receipt_ms"]))
    gx = list(range(len(groups)))
    for i, (p, color) in enumerate((("p50", "#55a868"), ("p95", "#c4ad66"), ("p99", "#c44e52"))):
        pos = [g + (i - 1) * width for g in gx]
        values = [max(lat[p] or 0, 0.1) for _, lat in groups]
        right.bar(pos, values, width, label=p, color=color)
        for px, v in zip(pos, values, strict=True):
            right.annotate(f"{v:,.0f}", (px, v), ha="center", va="bottom", fontsize=7)
    if latency:
        last = gx[-1]
        right.hlines(LATENCY_P99_TARGET_MS, last - 1.5 * width, last + 1.5 * width, colors="red",
                     linestyles="dashed", label=f"p99 target at half of the maximum ({LATENCY_P99_TARGET_MS} ms)")
    right.set_yscale("log")
    right.set_ylim(top=max(max(lat[p] or 0 for p in ("p50", "p95", "p99")) for _, lat in groups) * 4)
    right.set_xticks(gx, [g for g, _ in groups], fontsize=8)
    right.set_ylabel("milliseconds (log scale)")
    right.set_title("Latency to the webhook")
    right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=4, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------- main


def main() -> int:
    messages = env_int("BENCH_MESSAGES", 0) or None
    budget_s = float(env_int("BENCH_SECONDS", 75))
    sessions = env_int("BENCH_SESSIONS", 20)
    warmup = env_int("BENCH_WARMUP", 200)
    stall = float(env_int("BENCH_STALL_SECONDS", 60))
    configs = [c.strip() for c in os.environ.get("BENCH_CONFIGS", "4k,100k,4k-reuse").split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"bench: unknown BENCH_CONFIGS {unknown}; known: {', '.join(CONFIGS)}")
    database_url = os.environ.get("BENCH_DATABASE_URL") or None
    out_dir = ROOT / os.environ.get("BENCH_OUT", "bench-results")
    chart_path = ROOT / os.environ.get("BENCH_CHART", "docs/performance.png")
    out_dir.mkdir(parents=True, exist_ok=True)
    find_tool("smtp-source"), find_tool("smtp-sink")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    info = machine()
    db_kind = "postgresql" if database_url and database_url.startswith("postgresql") else "sqlite"
    print(f"bench: {info['nproc']} CPUs ({info['cpu_model']}), {info['ram_gib']} GiB, Python {info['python']}, "
          f"database {db_kind}, {messages or f'up to {DEFAULT_MESSAGES}'} messages per configuration, "
          f"{sessions} sessions", flush=True)

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="conduit-bench-"))
    results: list[Result] = []
    latency = profile = None
    receiver = Receiver(out_dir)
    try:
        common = {"sessions": sessions, "warmup": warmup, "receiver": receiver, "out_dir": out_dir,
                  "database_url": database_url, "stall": stall, "tmp": tmp}
        for name in configs:
            results.append(run_config(name, messages=messages, budget_s=budget_s, **common))
        rate = float(os.environ.get("BENCH_LATENCY_RATE") or 0)
        if not rate:
            base = next((r for r in results if r.config == "4k"), None)
            rate = base.delivered_per_s / 2 if base else 0
        latency_seconds = env_int("BENCH_LATENCY_SECONDS", 20)
        if rate > 0 and latency_seconds > 0:
            latency = latency_run(rate, seconds=latency_seconds, **common)
        wanted = os.environ.get("BENCH_PROFILE", "0").strip()
        if wanted not in ("", "0", "false", "no"):
            profile = []
            for name in ["4k"] if wanted in ("1", "true", "yes") else [n.strip() for n in wanted.split(",")]:
                if name not in CONFIGS:
                    raise SystemExit(f"bench: unknown configuration {name!r} in BENCH_PROFILE")
                count = messages or next((r.messages for r in results if r.config == name), MIN_MESSAGES)
                try:
                    profile.append(profile_run(name, messages=count, stamp=stamp, **common))
                except (RuntimeError, OSError) as exc:  # e.g. no ptrace permission: keep the results
                    print(f"[profile {name}] failed: {exc}; see {_shown(out_dir / 'py-spy.log')}", flush=True)
                    profile.append({"config": name, "error": str(exc)})
    finally:
        receiver.stop()
        CHILDREN.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    doc = {"when": stamp, "machine": info, "database": db_kind, "messages_fixed": messages,
           "seconds_budget_per_configuration": None if messages else budget_s,
           "sessions": sessions, "warmup_messages": warmup, "duration_s": time.monotonic() - started,
           "results": [asdict(r) for r in results], "latency_at_half_max": latency, "profile": profile,
           "targets": {"delivered_per_s": TARGETS, "latency_p99_ms_at_half_max": LATENCY_P99_TARGET_MS}}
    text = json.dumps(doc, indent=2)
    (out_dir / f"bench-{stamp}.json").write_text(text)
    (out_dir / "latest.json").write_text(text)
    chart(results, latency, chart_path,
          f"Conduit {info['conduit']} ({info['git_commit']}), {db_kind}, {info['nproc']} × {info['cpu_model']}, "
          f"{sessions} SMTP sessions, {stamp}")
    print()
    print(table(results, latency))
    print(f"\nbench: results in {_shown(out_dir / f'bench-{stamp}.json')}, chart in {_shown(chart_path)}; "
          f"took {doc['duration_s']:.0f} s")
    return 0


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM: clean up as Ctrl-C does."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        CHILDREN.stop_all()
        sys.exit(130)
    except Exception:
        CHILDREN.stop_all()
        raise
