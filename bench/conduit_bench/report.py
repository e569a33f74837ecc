"""The report: the machine's description, the results table."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from conduit_bench.measurements import proc_status_kib_file
from conduit_bench.settings import LATENCY_P99_TARGET_MS, ROOT

if TYPE_CHECKING:
    from conduit_bench.runs import Result

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


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _db_cpu(r: Result) -> str:
    return f" (+ {r.database_cpu_s / r.messages * 1000:.2f} PostgreSQL)" if r.database_cpu_s else ""


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
                     f"{r.cpu_s_per_1k:.2f}{_db_cpu(r)} | {r.conduit_cores_busy:.2f} | {r.other_processes_cores:.2f} |")
    lines += _checks_table(results)
    if latency:
        e2e, smtp = latency["end_of_data_to_receipt_ms"], latency["end_of_data_to_250_ms"]
        caption = (f"Latency at half of the maximum (4 KiB, inbound checks on, one connection per message, "
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


def checks_comparison(results: list[Result]) -> list[dict]:
    """For each configuration run both ways: the inbound checks on (the default) against off."""
    rows = []
    for on in results:
        off = next((r for r in results if r.config == on.config and not r.inbound_auth_checks), None)
        if not on.inbound_auth_checks or off is None:
            continue
        rows.append({"config": on.config, "label": on.label,
                     "delivered_per_s_on": on.delivered_per_s, "delivered_per_s_off": off.delivered_per_s,
                     "delivered_ratio": on.delivered_per_s / off.delivered_per_s,
                     "accepted_per_s_on": on.accepted_per_s, "accepted_per_s_off": off.accepted_per_s,
                     "accepted_ratio": on.accepted_per_s / off.accepted_per_s,
                     "cpu_s_per_1k_on": on.cpu_s_per_1k, "cpu_s_per_1k_off": off.cpu_s_per_1k,
                     "database_cpu_s_per_1k_on": on.database_cpu_s / on.messages * 1000,
                     "database_cpu_s_per_1k_off": off.database_cpu_s / off.messages * 1000,
                     "dns_queries_on": on.dns_queries})
    return rows


def _checks_table(results: list[Result]) -> list[str]:
    rows = checks_comparison(results)
    if not rows:
        return []
    head = ("| configuration | delivered/s, checks on | checks off | on / off | accepted/s on / off | "
            "CPU s per 1,000 msgs on / off | DNS queries during the load |")
    lines = ["", "Inbound checks (SPF, DKIM, DMARC; Conduit's default) on and off, the same load:", "", head,
             "|" + " --- |" * (head.count("|") - 1)]
    for row in rows:
        db = (f" (+ {row['database_cpu_s_per_1k_on']:.1f} / {row['database_cpu_s_per_1k_off']:.1f} PostgreSQL)"
              if row["database_cpu_s_per_1k_on"] else "")
        lines.append(f"| {row['label']} | {row['delivered_per_s_on']:,.1f} | {row['delivered_per_s_off']:,.1f} | "
                     f"{row['delivered_ratio']:.2f} | {row['accepted_ratio']:.2f} | "
                     f"{row['cpu_s_per_1k_on']:.2f} / {row['cpu_s_per_1k_off']:.2f}{db} | {row['dns_queries_on']} |")
    return lines


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
