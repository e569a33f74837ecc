"""One measured run each: a configuration under saturation (with its baselines), the latency run
at half of the maximum, and the py-spy profile run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from conduit_bench.load import (
    baseline,
    paced_load,
    run_async,
    smtp_source,
    start_aiosmtpd_sink,
    start_smtp_sink,
)
from conduit_bench.mail_auth import SendingDomain
from conduit_bench.measurements import (
    RssSampler,
    cpu_delta,
    id_time,
    machine_busy_seconds,
    own_cpu,
    percentiles,
    postgres_cpu,
    tree_status_kib,
    wait_until_quiet,
)
from conduit_bench.processes import CHILDREN, Conduit, Receiver
from conduit_bench.report import shown
from conduit_bench.settings import (
    CONFIGS,
    DEFAULT_MESSAGES,
    LABELS,
    LATENCY_P99_TARGET_MS,
    METRICS,
    MIN_MESSAGES,
    QUIET_WAIT,
    SYNC,
    TARGETS,
)
from profile_summary import (
    summarise,  # bench/, the entry point's directory, is on sys.path
)


@dataclass
class Result:
    config: str
    label: str
    size_bytes: int
    reuse_connections: bool
    messages: int
    sessions: int
    inbound_auth_checks: bool = True  # Conduit's default: SPF, DKIM and DMARC of every message
    rspamd: bool = False  # every message checked by rspamd (BENCH_RSPAMD)
    metrics: bool = True  # CONDUIT_METRICS (BENCH_METRICS), scraped every BENCH_SCRAPE_SECONDS when on
    synchronous: bool = False  # the webhook's delivery_mode is "synchronous" (BENCH_SYNC)
    dns_queries: int = 0  # answered by the benchmark's DNS server during the measured load
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


def run_config(name: str, *, messages: int | None, budget_s: float, checks_off: bool, **common) -> list[Result]:
    """The configuration with Conduit's default inbound checks, then (``checks_off``) with
    ``CONDUIT_INBOUND_AUTH_CHECKS=false`` and the same number of messages, then the baselines
    under the same load."""
    size, reuse = CONFIGS[name]
    results = [measure(name, auth_checks=True, messages=messages, budget_s=budget_s, **common)]
    if checks_off:
        results.append(measure(name, auth_checks=False, messages=results[0].messages, budget_s=budget_s, **common))
    count, message_file = results[0].messages, common["message_files"][size]
    print(f"[{name}] baselines: smtp-sink and a bare aiosmtpd, the same load", flush=True)
    smtp_sink = baseline(start_smtp_sink, messages=count, size=size, reuse=reuse, sessions=common["sessions"],
                         message_file=message_file)
    aiosmtpd_sink = baseline(start_aiosmtpd_sink, messages=count, size=size, reuse=reuse,
                             sessions=common["sessions"], message_file=message_file)
    for result in results:
        result.smtp_sink, result.aiosmtpd_sink = smtp_sink, aiosmtpd_sink
        result.ratio_to_smtp_sink = result.accepted_per_s / smtp_sink["accepted_per_s"]
        result.delivered_ratio_to_smtp_sink = result.delivered_per_s / smtp_sink["accepted_per_s"]
        if result.target_delivered_per_s:
            result.target_met = result.delivered_per_s >= result.target_delivered_per_s
    print(f"[{name}] smtp-sink accepted {smtp_sink['accepted_per_s']:.0f}/s, bare aiosmtpd "
          f"{aiosmtpd_sink['accepted_per_s']:.0f}/s; Conduit/smtp-sink "
          f"{results[0].ratio_to_smtp_sink:.3f} at SMTP, {results[0].delivered_ratio_to_smtp_sink:.3f} end to end",
          flush=True)
    return results


def measure(name: str, *, auth_checks: bool, messages: int | None, budget_s: float, sessions: int, warmup: int,
            receiver: Receiver, out_dir: Path, database_url: str | None, stall: float, tmp: Path,
            sending: SendingDomain, message_files: dict[int, Path], rspamd_url: str = "") -> Result:
    """A fresh Conduit under ``smtp-source``'s load: the configuration's signed message, 20 sessions."""
    size, reuse = CONFIGS[name]
    tag = name if auth_checks else f"{name}-checks-off"
    result = Result(config=name, label=LABELS[name] + ("" if auth_checks else ", checks off")
                    + (", rspamd" if rspamd_url else "") + ("" if METRICS == "on" else ", metrics off")
                    + (", synchronous" if SYNC else ""),
                    size_bytes=size, reuse_connections=reuse, messages=0, sessions=sessions,
                    inbound_auth_checks=auth_checks, target_delivered_per_s=TARGETS.get(name),
                    rspamd=bool(rspamd_url), metrics=METRICS == "on", synchronous=SYNC)
    load = {"size": size, "reuse": reuse, "sessions": sessions, "message_file": message_files[size]}
    workdir = Path(tempfile.mkdtemp(prefix=f"conduit-{tag}-", dir=tmp))
    conduit = Conduit(database_url, workdir, out_dir / f"conduit-{tag}.log", auth_checks=auth_checks,
                      dns_servers=sending.servers, rspamd_url=rspamd_url)
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
            smtp_source(conduit.smtp_port, messages=warmup, to=address, **load)
            receiver.wait_for(warmup, stall, conduit.proc)
            warmup_rate = warmup / (time.time() - started)
            receiver.reset()
        messages = result.messages = choose_count(messages, warmup_rate or 1e9, budget_s)
        cpu0, rcv0, machine0, self0 = conduit.cpu(), receiver.cpu(), machine_busy_seconds(), own_cpu()
        pg0, dns0 = postgres_cpu(), sending.queries()
        print(f"[{name}] Conduit, inbound checks {'on' if auth_checks else 'off'}: {messages} messages of "
              f"{size} bytes, {sessions} sessions"
              f"{', connections reused (-d)' if reuse else ', one connection per message'}", flush=True)
        started = time.time()
        result.smtp_wall_s, result.load_generator_cpu_s = smtp_source(
            conduit.smtp_port, messages=messages, to=address, **load)
        receiver.wait_for(messages, stall, conduit.proc)
        cpu1, rcv1, machine1, self1 = conduit.cpu(), receiver.cpu(), machine_busy_seconds(), own_cpu()
        result.database_cpu_s = cpu_delta(pg0, postgres_cpu()) if database_url else 0.0
        result.dns_queries = sending.queries() - dns0
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
              f"p99 accept→receipt {result.accept_to_receipt_ms['p99']:.0f} ms, "
              f"{result.cpu_s_per_1k:.2f} CPU s per 1,000 messages", flush=True)
    finally:
        conduit.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def latency_run(rate: float, *, seconds: int, sessions: int, warmup: int, receiver: Receiver, out_dir: Path,
                database_url: str | None, stall: float, tmp: Path, sending: SendingDomain,
                message_files: dict[int, Path], rspamd_url: str = "") -> dict:
    """Conduit with its default inbound checks, loaded at ``rate`` by the harness's own client with
    signed 4 KiB messages, each with its own Message-ID."""
    count = max(50, int(rate * seconds))
    size = 4 * 1024
    print(f"[latency] {count} messages of 4 KiB at {rate:.0f}/s, one connection each", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="conduit-latency-", dir=tmp))
    conduit = Conduit(database_url, workdir, out_dir / "conduit-latency.log", auth_checks=True,
                      dns_servers=sending.servers, rspamd_url=rspamd_url)
    try:
        address = conduit.add_webhook(receiver.url)
        sampler = RssSampler(conduit.pid)
        sampler.start()
        wait_until_quiet(QUIET_WAIT)
        receiver.reset()
        if warmup:
            smtp_source(conduit.smtp_port, messages=warmup, size=size, reuse=False, sessions=sessions, to=address,
                        message_file=message_files[size])
            receiver.wait_for(warmup, stall, conduit.proc)
            receiver.reset()
        template = sending.signed(size)
        cpu0, machine0, self0, rcv0 = conduit.cpu(), machine_busy_seconds(), own_cpu(), receiver.cpu()
        pg0 = postgres_cpu()
        started = time.time()
        sent, late = run_async(paced_load(conduit.smtp_port, address, rate=rate, count=count, sessions=sessions,
                                          template=template))
        receiver.wait_for(count, stall, conduit.proc)
        elapsed = time.time() - started
        cpu = conduit.cpu() - cpu0
        database_cpu = cpu_delta(pg0, postgres_cpu()) if database_url else 0.0
        ours = cpu + own_cpu() - self0 + receiver.cpu() - rcv0 + database_cpu
        other = max(0.0, (machine_busy_seconds() - machine0 - ours) / elapsed)
        arrivals = {r[2]: r[0] for r in receiver.records() if r[2]}
        missing = [m for m in sent if m not in arrivals]
        if missing:
            raise RuntimeError(f"latency run: {len(missing)} messages never reached the receiver")
        end_to_end = [(arrivals[m] - end) * 1000 for m, (end, _) in sent.items()]
        smtp_reply = [(accepted - end) * 1000 for end, accepted in sent.values()]
        result = {"rate_per_s": rate, "messages": count, "size_bytes": size, "sessions_max": sessions,
                  "synchronous": SYNC,
                  "sends_behind_schedule": late, "end_of_data_to_receipt_ms": percentiles(end_to_end),
                  "end_of_data_to_250_ms": percentiles(smtp_reply), "conduit_cpu_s": cpu,
                  "conduit_cores_busy": cpu / elapsed, "other_processes_cores": other,
                  "database_cpu_s": database_cpu, "peak_rss_mib": sampler.stop()}
        result["target_met"] = result["end_of_data_to_receipt_ms"]["p99"] < LATENCY_P99_TARGET_MS
        print("[latency] p50/p95/p99 end of DATA → webhook: "
              + "/".join(f"{result['end_of_data_to_receipt_ms'][p]:.0f}" for p in ("p50", "p95", "p99")) + " ms"
              + ("; end of DATA → reply (synchronous): "
                 + "/".join(f"{result['end_of_data_to_250_ms'][p]:.0f}" for p in ("p50", "p95", "p99")) + " ms"
                 if SYNC else ""), flush=True)
        return result
    finally:
        conduit.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def profile_run(name: str, *, messages: int, sessions: int, warmup: int, receiver: Receiver, out_dir: Path,
                database_url: str | None, stall: float, tmp: Path, stamp: str, sending: SendingDomain,
                message_files: dict[int, Path], rspamd_url: str = "") -> dict:
    """One configuration's load again, sampled by py-spy: 100 Hz, only the thread holding the GIL
    (``--gil``)."""
    # Conduit's CPU time is its event loop's: its aiosqlite threads mostly wait (in SQLite's busy
    # handler), which py-spy would otherwise count as running. So --gil shows where the CPU goes.
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(py_spy, os.X_OK):
        raise RuntimeError("BENCH_PROFILE needs py-spy (pip install py-spy)")
    size, reuse = CONFIGS[name]
    workdir = Path(tempfile.mkdtemp(prefix="conduit-profile-", dir=tmp))
    conduit = Conduit(database_url, workdir, out_dir / f"conduit-profile-{name}.log", auth_checks=True,
                      dns_servers=sending.servers, rspamd_url=rspamd_url)
    load = {"size": size, "reuse": reuse, "sessions": sessions, "message_file": message_files[size]}
    raw = out_dir / f"profile-{name}-{stamp}.collapsed"
    try:
        address = conduit.add_webhook(receiver.url)
        receiver.reset()
        smtp_source(conduit.smtp_port, messages=warmup or 200, to=address, **load)
        receiver.wait_for(warmup or 200, stall, conduit.proc)
        receiver.reset()
        print(f"[profile {name}] py-spy on Conduit during {messages} messages ({LABELS[name]})", flush=True)
        spy = CHILDREN.start([py_spy, "record", "--pid", str(conduit.pid), "--rate", "100", "--format", "raw",
                              "--threads", "--gil", "--subprocesses", "--output", str(raw)],
                             stdout=subprocess.DEVNULL, stderr=(out_dir / "py-spy.log").open("ab"))
        time.sleep(1.0)
        started = time.time()
        smtp_source(conduit.smtp_port, messages=messages, to=address, **load)
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
    return {"config": name, "collapsed": shown(raw), "summary": shown(out_dir / f"profile-{name}-{stamp}.txt"),
            "accepted_per_s_while_profiled": messages / accepted_s,
            "delivered_per_s_while_profiled": messages / delivered_s}
