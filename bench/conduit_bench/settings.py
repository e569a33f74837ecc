"""Constants and environment settings shared by the benchmark's modules (bench/run.py documents
every ``BENCH_*`` setting)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DOMAIN = "bench.example"
SENDER = "sender@sender.example"  # its domain publishes SPF, DKIM and DMARC (mail_auth.py)
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONFIGS = {  # name: (message body bytes, reuse connections with smtp-source -d)
    "4k": (4 * 1024, False),
    "100k": (100 * 1024, False),
    "4k-reuse": (4 * 1024, True),
    "100k-reuse": (100 * 1024, True),
}
LABELS = {"4k": "4 KiB", "100k": "100 KiB", "4k-reuse": "4 KiB, -d", "100k-reuse": "100 KiB, -d"}
# The project's targets (end to end, messages/s) and latency bound (docs/performance.md).
TARGETS = {"4k": 1200, "100k": 400, "4k-reuse": 2000}
LATENCY_P99_TARGET_MS = 250
DEFAULT_MESSAGES, MIN_MESSAGES = 5000, 1000
QUIET_WAIT = float(os.environ.get("BENCH_QUIET_WAIT") or 30)
# BENCH_METRICS=off runs Conduit with CONDUIT_METRICS=false (nothing recorded), for comparing
# with the default (on, scraped every BENCH_SCRAPE_SECONDS as Prometheus would).
METRICS = (os.environ.get("BENCH_METRICS") or "on").strip().lower()
if METRICS not in ("on", "off"):
    raise SystemExit(f"bench: BENCH_METRICS must be on or off, not {METRICS!r}")
SCRAPE_SECONDS = float(os.environ.get("BENCH_SCRAPE_SECONDS") or 15)
# BENCH_SYNC=1: the bench webhook is synchronous (delivery_mode "synchronous"): every DATA waits
# for the receiver's answer, and the latency run's end of DATA → reply is that round trip.
SYNC = os.environ.get("BENCH_SYNC", "0").strip().lower() not in ("", "0", "false", "no")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default
