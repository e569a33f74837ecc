"""``make bench``: every configuration, the latency run, the optional profile; then the table,
the JSON and the chart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from conduit_bench.chart import chart
from conduit_bench.mail_auth import SendingDomain
from conduit_bench.measurements import tree_cpu_seconds
from conduit_bench.processes import CHILDREN, Receiver, find_tool
from conduit_bench.report import checks_comparison, machine, shown, table
from conduit_bench.runs import Result, latency_run, profile_run, run_config
from conduit_bench.settings import (
    CONFIGS,
    DEFAULT_MESSAGES,
    LATENCY_P99_TARGET_MS,
    METRICS,
    MIN_MESSAGES,
    ROOT,
    SYNC,
    TARGETS,
    env_int,
)


def main() -> int:
    messages = env_int("BENCH_MESSAGES", 0) or None
    budget_s = float(env_int("BENCH_SECONDS", 75))
    sessions = env_int("BENCH_SESSIONS", 20)
    warmup = env_int("BENCH_WARMUP", 200)
    stall = float(env_int("BENCH_STALL_SECONDS", 60))
    with_rspamd = os.environ.get("BENCH_RSPAMD", "0").strip().lower() not in ("", "0", "false", "no")
    default_configs = "4k" if with_rspamd else "4k,100k,4k-reuse"
    configs = [c.strip() for c in os.environ.get("BENCH_CONFIGS", default_configs).split(",") if c.strip()]
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
          f"{sessions} sessions{', synchronous webhook (BENCH_SYNC)' if SYNC else ''}", flush=True)

    checks_off = [] if with_rspamd and not os.environ.get("BENCH_CHECKS_OFF") else _checks_off_configs(configs)

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="conduit-bench-"))
    results: list[Result] = []
    latency = profile = None
    sending = SendingDomain()
    sending.start()
    receiver = Receiver(out_dir)
    rspamd = None
    try:
        if with_rspamd:
            rspamd = _start_rspamd(tmp)
        message_files = {size: sending.message_file(size, tmp) for size, _ in CONFIGS.values()}
        common = {"sessions": sessions, "warmup": warmup, "receiver": receiver, "out_dir": out_dir,
                  "database_url": database_url, "stall": stall, "tmp": tmp, "sending": sending,
                  "message_files": message_files, "rspamd_url": rspamd.url if rspamd else ""}
        for name in configs:
            results += run_config(name, messages=messages, budget_s=budget_s, checks_off=name in checks_off, **common)
        rate = float(os.environ.get("BENCH_LATENCY_RATE") or 0)
        if not rate:
            base = next((r for r in results if r.config == "4k" and r.inbound_auth_checks), None)
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
                    print(f"[profile {name}] failed: {exc}; see {shown(out_dir / 'py-spy.log')}", flush=True)
                    profile.append({"config": name, "error": str(exc)})
        rspamd_cpu_s = tree_cpu_seconds(rspamd.process.pid) if rspamd and rspamd.process else None
    finally:
        receiver.stop()
        CHILDREN.stop_all()
        if rspamd is not None:
            rspamd.stop()
        sending.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    doc = {"when": stamp, "machine": info, "database": db_kind, "messages_fixed": messages,
           "seconds_budget_per_configuration": None if messages else budget_s,
           "sessions": sessions, "warmup_messages": warmup, "duration_s": time.monotonic() - started,
           "metrics": METRICS, "synchronous": SYNC,
           "results": [asdict(r) for r in results], "checks_on_vs_off": checks_comparison(results),
           "latency_at_half_max": latency, "profile": profile,
           "rspamd": {"cpu_s": rspamd_cpu_s} if with_rspamd else None,
           "targets": {"delivered_per_s": TARGETS, "latency_p99_ms_at_half_max": LATENCY_P99_TARGET_MS}}
    text = json.dumps(doc, indent=2)
    (out_dir / f"bench-{stamp}.json").write_text(text)
    (out_dir / "latest.json").write_text(text)
    chart(results, latency, chart_path,
          f"Conduit {info['conduit']} ({info['git_commit']}), {db_kind}, {info['nproc']} × {info['cpu_model']}, "
          f"{sessions} SMTP sessions, {stamp}")
    print()
    print(table(results, latency))
    if with_rspamd:
        print(_rspamd_summary(results, latency, rspamd_cpu_s))
    if SYNC:
        print(_sync_summary(latency))
    print(f"\nbench: results in {shown(out_dir / f'bench-{stamp}.json')}, chart in {shown(chart_path)}; "
          f"took {doc['duration_s']:.0f} s")
    return 0


def _start_rspamd(tmp: Path):
    """``BENCH_RSPAMD``: Debian's rspamd on loopback, configured as the tests' fixture configures it."""
    from tests.support.rspamd import Rspamd, rspamd_binary

    binary = rspamd_binary()
    if binary is None:
        raise SystemExit("bench: BENCH_RSPAMD needs rspamd (Debian: apt-get install rspamd; see README, Development)")
    rspamd = Rspamd(tmp / "rspamd", binary)
    rspamd.start()
    print(f"bench: rspamd {rspamd.url} checks every message (CONDUIT_RSPAMD_URL)", flush=True)
    return rspamd


def _rspamd_summary(results: list[Result], latency: dict | None, rspamd_cpu_s: float | None) -> str:
    """The numbers BENCH_RSPAMD is run for: 4 KiB throughput and the p99 latency, with rspamd on."""
    four = next((r for r in results if r.config == "4k" and r.inbound_auth_checks), None)
    parts = []
    if four is not None:
        parts.append(f"4 KiB delivered {four.delivered_per_s:,.1f}/s (accepted {four.accepted_per_s:,.1f}/s), "
                     f"accept→receipt p99 {four.accept_to_receipt_ms.get('p99', 0):,.0f} ms saturated")
    if latency:
        parts.append(f"end of DATA→webhook p99 {latency['end_of_data_to_receipt_ms']['p99']:,.0f} ms and "
                     f"end of DATA→250 p99 {latency['end_of_data_to_250_ms']['p99']:,.0f} ms at "
                     f"{latency['rate_per_s']:.0f}/s")
    if rspamd_cpu_s is not None:
        parts.append(f"rspamd used {rspamd_cpu_s:,.1f} CPU s in all")
    return "rspamd on: " + "; ".join(parts)


def _sync_summary(latency: dict | None) -> str:
    """The numbers BENCH_SYNC is run for: how long a sender waits for its reply when the webhook
    answers it (end of DATA → 250, which includes the POST and the receiver's answer)."""
    if not latency:
        return "synchronous: no latency run (BENCH_LATENCY_SECONDS=0 or no 4k rate), no reply latency measured"
    reply = latency["end_of_data_to_250_ms"]
    return (f"synchronous webhook: end of DATA → reply median {reply['p50']:,.0f} ms, p99 {reply['p99']:,.0f} ms "
            f"(max {reply['max']:,.0f} ms) at {latency['rate_per_s']:.0f} messages/s, {latency['messages']} messages")


def _checks_off_configs(configs: list[str]) -> list[str]:
    """``BENCH_CHECKS_OFF``: the configurations also run with the inbound checks off (default: all
    of ``BENCH_CONFIGS``; ``none``: none)."""
    value = os.environ.get("BENCH_CHECKS_OFF", "").strip()
    if not value:
        return configs
    if value.lower() == "none":
        return []
    wanted = [c.strip() for c in value.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in configs]
    if unknown:
        raise SystemExit(f"bench: BENCH_CHECKS_OFF names {unknown}, which BENCH_CONFIGS does not run")
    return wanted


def _terminate(signum: int, frame: object) -> None:  # noqa: ARG001 - a signal handler's signature
    """SIGTERM: clean up as Ctrl-C does."""
    raise KeyboardInterrupt


def run() -> int:
    """main(), with every child process stopped however it ends (Ctrl-C and SIGTERM included)."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return main()
    except KeyboardInterrupt:
        CHILDREN.stop_all()
        return 130
    except Exception:
        CHILDREN.stop_all()
        raise
